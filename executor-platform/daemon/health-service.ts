import * as grpc from "@grpc/grpc-js";
import {
  type HealthCheckRequest,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthCheckResponse,
} from "../protocol/generated/grpc/health/v1/health_pb.js";

const SERVICES = new Set(["", "numerous.tasks.v1.TaskService", "numerous.tasks.v1.WorkloadService"]);

/** The daemon's side of the standard health protocol. */
export interface HealthState {
  /** True while the daemon takes work. */
  serving(): boolean;
  /** Calls `listener` when serving() may have changed; returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/**
 * `grpc.health.v1.Health` for the daemon: SERVING while it takes work, NOT_SERVING once it
 * shuts down. Needs no token, so container probes and load balancers can ask.
 */
export function createHealthService(state: HealthState): grpc.UntypedServiceImplementation {
  const statusOf = (service: string): ServingStatus | undefined => {
    if (!SERVICES.has(service)) return undefined;
    return state.serving() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  };
  return {
    check(
      call: grpc.ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>,
      callback: grpc.sendUnaryData<HealthCheckResponse>,
    ) {
      const status = statusOf(call.request.service);
      if (status === undefined) {
        callback({
          code: grpc.status.NOT_FOUND,
          details: `unknown service ${JSON.stringify(call.request.service)}`,
        });
        return;
      }
      callback(null, { status });
    },
    watch(call: grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) {
      let last: ServingStatus | undefined;
      const send = () => {
        const status = statusOf(call.request.service) ?? ServingStatus.SERVICE_UNKNOWN;
        if (status !== last) {
          last = status;
          call.write({ status });
        }
      };
      send();
      const off = state.onChange(send);
      call.on("cancelled", off);
      call.on("close", off);
    },
  };
}
