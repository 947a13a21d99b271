/** Tests start real nats-servers with the same launcher the demo uses. */
export {
  findNatsServer, startNatsServer, NatsServerNotFoundError, NatsServerStartError, NatsServerStopError,
  type NatsServerHandle, type NatsServerOptions, type NatsServerStopOptions,
} from "../../cli/local-nats.js";
