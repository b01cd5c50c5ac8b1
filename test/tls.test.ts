/**
 * TLS between clients and the daemon: certificates made here with the openssl command (a CA,
 * a server certificate for 127.0.0.1 and localhost, an expired one, one from a foreign CA),
 * real daemon processes, and the SDK and the command line as clients. Workloads reach their
 * daemon over its private unix socket, so a task runs end to end with no TLS set up for them.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ExecutorConfigError,
  ExecutorUnavailableError,
  PlatformExecutor,
  type TaskInstanceState,
  listTaskInstances,
  setExecutor,
} from "numerous-tasks";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { reply } from "./fixtures/security-tasks.js";
import { runCli } from "./helpers/cli-process.js";
import { withDeadline } from "./helpers/deadline.js";
import {
  type DaemonProcess,
  type DaemonProcessOptions,
  removeDataDir,
  startDaemon,
} from "./helpers/daemon-process.js";

let certs: string;
const pem = (name: string) => join(certs, name);

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { cwd: certs, stdio: ["ignore", "ignore", "pipe"] });
}

/** A CA, and a key with its request for 127.0.0.1 and localhost; each test signs what it needs. */
beforeAll(() => {
  certs = mkdtempSync(join(tmpdir(), "nt-certs-"));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=numerous-tasks test CA",
  );
  openssl(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "foreign-ca.key",
    "-out",
    "foreign-ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=foreign CA",
  );
  openssl("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost");
  writeFileSync(pem("san.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "san.cnf",
  );
  openssl(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "foreign-ca.pem",
    "-CAkey",
    "foreign-ca.key",
    "-CAcreateserial",
    "-out",
    "foreign.pem",
    "-days",
    "2",
    "-extfile",
    "san.cnf",
  );
  // `x509 -req` cannot date a certificate in the past; the `ca` command can.
  writeFileSync(pem("index.txt"), "");
  writeFileSync(pem("serial"), "01\n");
  writeFileSync(
    pem("ca.cnf"),
    [
      "[ca]",
      "default_ca = test",
      "[test]",
      `database = ${pem("index.txt")}`,
      `new_certs_dir = ${certs}`,
      `serial = ${pem("serial")}`,
      "default_md = sha256",
      "policy = any",
      "unique_subject = no",
      "[any]",
      "commonName = supplied",
      "",
    ].join("\n"),
  );
  openssl(
    "ca",
    "-batch",
    "-notext",
    "-config",
    "ca.cnf",
    "-cert",
    "ca.pem",
    "-keyfile",
    "ca.key",
    "-in",
    "server.csr",
    "-out",
    "expired.pem",
    "-startdate",
    "20200101000000Z",
    "-enddate",
    "20200102000000Z",
    "-extfile",
    "san.cnf",
  );
});

afterAll(() => {
  rmSync(certs, { recursive: true, force: true });
});

const daemons: DaemonProcess[] = [];
const executors: PlatformExecutor[] = [];

afterEach(async () => {
  for (const executor of executors.splice(0)) await executor.close();
  for (const daemon of daemons.splice(0)) {
    await daemon.stop();
    removeDataDir(daemon.dataDir);
  }
});

/** A daemon serving TLS with `cert` (a file made above) and the server key. */
async function startTls(cert: string, options: DaemonProcessOptions = {}): Promise<DaemonProcess> {
  const daemon = await startDaemon({
    ...options,
    args: ["--tls-cert", pem(cert), "--tls-key", pem("server.key"), ...(options.args ?? [])],
  });
  daemons.push(daemon);
  return daemon;
}

async function startPlain(): Promise<DaemonProcess> {
  const daemon = await startDaemon();
  daemons.push(daemon);
  return daemon;
}

function connect(address: string, tlsCaFile: string | undefined): PlatformExecutor {
  const executor = new PlatformExecutor({
    address,
    accessToken: undefined,
    deploymentId: undefined,
    tlsCaFile,
  });
  executors.push(executor);
  setExecutor(executor);
  return executor;
}

/** The error `wait()` rejects with; fails the test, saying so, if the instance never ends. */
function failureOf(instance: TaskInstanceState): Promise<unknown> {
  return withDeadline(
    instance.wait().then(
      (value: unknown) => ({ resolved: value }),
      (thrown: unknown) => thrown,
    ),
    `instance ${instance.id} to end`,
  );
}

/**
 * Calls to a daemon that cannot be reached end with ExecutorUnavailableError saying `why`, and
 * never hang: a submit (the instance fails) and, alongside, a get from a second client.
 */
async function expectUnreachable(address: string, tlsCaFile: string | undefined, why: string): Promise<void> {
  const other = new PlatformExecutor({ address, accessToken: undefined, deploymentId: undefined, tlsCaFile });
  executors.push(other);
  connect(address, tlsCaFile);
  const instance = reply("never runs");
  const [error, get] = await Promise.all([
    failureOf(instance),
    withDeadline(
      other.get("some-instance").then(
        (value: unknown) => ({ resolved: value }),
        (thrown: unknown) => thrown,
      ),
      "a get from a second client to end",
    ),
  ]);
  for (const thrown of [error, get]) {
    expect(thrown).toBeInstanceOf(ExecutorUnavailableError);
    expect((thrown as Error).message).toContain(why);
  }
  expect(instance.status).toBe("failed");
  expect(instance.error).toMatchObject({ name: "ExecutorUnavailableError", code: "EXECUTOR_UNAVAILABLE" });
  expect(instance.error?.message).toContain(why);
}

describe("a daemon serving TLS", () => {
  it("runs a task end to end for a client that trusts its CA, by https:// address or by NUMEROUS_EXECUTOR_TLS_CA alone", async () => {
    const daemon = await startTls("server.pem");
    connect(`https://${daemon.address}`, pem("ca.pem"));
    const instance = reply({ over: "tls" });
    await expect(instance.wait()).resolves.toEqual({ over: "tls" });

    // The CA variable alone turns TLS on for a bare host:port.
    connect(daemon.address, pem("ca.pem"));
    expect((await listTaskInstances()).map((listed) => [listed.id, listed.status])).toEqual([
      [instance.id, "completed"],
    ]);

    const env = { NUMEROUS_EXECUTOR_ADDRESS: daemon.address, NUMEROUS_EXECUTOR_TLS_CA: pem("ca.pem") };
    const health = await runCli(["health"], { env });
    expect(health).toEqual({ code: 0, stdout: "SERVING\n", stderr: "" });
    const get = await runCli(["tasks", "get", instance.id], {
      env: { ...env, NUMEROUS_EXECUTOR_ADDRESS: `https://${daemon.address}` },
    });
    expect(get.stderr).toBe("");
    expect(get.code).toBe(0);
    expect(get.stdout).toContain('completed: {"over":"tls"}');
  });

  it("fails a plain client with ExecutorUnavailableError that suggests TLS, without hanging", async () => {
    const daemon = await startTls("server.pem");
    await expectUnreachable(
      daemon.address,
      undefined,
      "if the daemon serves TLS, use an https:// address or set NUMEROUS_EXECUTOR_TLS_CA",
    );
    const health = await runCli(["health", "--address", daemon.address]);
    expect(health.code).toBe(1);
    expect(health.stdout).toMatch(/^UNREACHABLE: 127\.0\.0\.1:\d+: .*if the daemon serves TLS/);
  });

  it("fails a client that does not trust the certificate's CA, saying what to set", async () => {
    const daemon = await startTls("foreign.pem");
    await expectUnreachable(
      `https://${daemon.address}`,
      pem("ca.pem"),
      "the daemon's TLS certificate is not trusted for this address: set NUMEROUS_EXECUTOR_TLS_CA to the PEM file of the CA that signed it",
    );
    // Nor does the system's trust store know the test CA.
    const health = await runCli(["health", "--address", `https://${daemon.address}`]);
    expect(health.code).toBe(1);
    expect(health.stdout).toContain("is not trusted");
  });

  it("fails clients of an expired certificate, saying so; the daemon warns at start", async () => {
    const daemon = await startTls("expired.pem");
    await daemon.waitForLog(
      (entry) =>
        entry.msg === "the TLS certificate has expired: clients will refuse it" &&
        entry.expires === "Jan  2 00:00:00 2020 GMT",
    );
    await expectUnreachable(
      `https://${daemon.address}`,
      pem("ca.pem"),
      "certificate has expired (the daemon's TLS certificate has expired)",
    );
  });
});

describe("a plain daemon", () => {
  it("fails a TLS client with ExecutorUnavailableError that says the daemon does not serve TLS", async () => {
    const daemon = await startPlain();
    await expectUnreachable(
      `https://${daemon.address}`,
      pem("ca.pem"),
      "the daemon does not seem to serve TLS: drop https:// and NUMEROUS_EXECUTOR_TLS_CA",
    );
  });
});

describe("TLS settings that cannot work", () => {
  it("serve exits 2 on --tls-cert without --tls-key, a key of another certificate, or a file that is missing", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "nt-tls-refused-"));
    try {
      const serve = (...args: string[]) =>
        runCli(["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, ...args]);
      const alone = await serve("--tls-cert", pem("server.pem"));
      expect(alone.code).toBe(2);
      expect(alone.stderr).toContain("--tls-cert and --tls-key go together");
      const mismatched = await serve("--tls-cert", pem("server.pem"), "--tls-key", pem("ca.key"));
      expect(mismatched.code).toBe(2);
      expect(mismatched.stderr).toContain("--tls-cert and --tls-key do not make a TLS identity");
      const missing = await serve("--tls-cert", pem("missing.pem"), "--tls-key", pem("server.key"));
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain("cannot read the TLS files: ENOENT");
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("a CA file that is not a certificate fails every call with ExecutorConfigError naming NUMEROUS_EXECUTOR_TLS_CA", async () => {
    const daemon = await startTls("server.pem");
    connect(`https://${daemon.address}`, pem("server.key"));
    const instance = reply("never runs");
    const error = await failureOf(instance);
    expect(instance.error).toMatchObject({ name: "ExecutorConfigError", code: "EXECUTOR_CONFIG" });
    expect(instance.error?.message).toContain(
      `NUMEROUS_EXECUTOR_TLS_CA="${pem("server.key")}": not a readable PEM certificate`,
    );
    // The SDK's own error, naming the variable to fix: the call never reached the daemon.
    expect(error).toBeInstanceOf(ExecutorConfigError);
    expect(error).toMatchObject({ code: "EXECUTOR_CONFIG", variable: "NUMEROUS_EXECUTOR_TLS_CA" });
    expect((error as ExecutorConfigError).message).toContain("not a readable PEM certificate");
    await expect(listTaskInstances()).rejects.toThrow(/NUMEROUS_EXECUTOR_TLS_CA/);
    const list = await runCli(["tasks", "list"], {
      env: { NUMEROUS_EXECUTOR_ADDRESS: daemon.address, NUMEROUS_EXECUTOR_TLS_CA: pem("missing.pem") },
    });
    expect(list.code).toBe(2);
    expect(list.stderr).toContain("NUMEROUS_EXECUTOR_TLS_CA");
    expect(list.stderr).toContain("ENOENT");
  });
});
