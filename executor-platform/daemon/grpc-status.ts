import * as grpc from "@grpc/grpc-js";
import { isStoreUnavailable } from "../store/store-errors.js";

/** An error that grpc-js sends as this status and text. */
export function serviceError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/** The one place where anything a handler threw becomes a status; internals never leak. */
export function toStatus(error: unknown): grpc.ServiceError {
  if (error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === "number") {
    return error as grpc.ServiceError;
  }
  if (isStoreUnavailable(error)) {
    return serviceError(grpc.status.UNAVAILABLE, "the daemon cannot reach its store right now; try again");
  }
  return serviceError(grpc.status.INTERNAL, "internal daemon error; see the daemon's log");
}
