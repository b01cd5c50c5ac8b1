/**
 * The gRPC target for an executor address: `host:port`, `unix:/path`, or either with
 * `http://` / `https://` (TLS) in front.
 */
export function channelTarget(address: string): string {
  return address.replace(/^https?:\/\//, "");
}

/** True when the address asks for TLS. */
export function wantsTls(address: string): boolean {
  return address.startsWith("https://");
}
