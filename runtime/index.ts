// The runtime's public surface, for hosting rosey-llm inside another program or test.
export { startService, loadHandlers, SERVICE_NAME, VERSION, type RunningService, type ServiceOptions } from "./service";
export { startNatsServer, findNatsServer, freePort, type NatsServer } from "./nats-server";
export { replayEvents, parseSince } from "./replay";
export { BUCKETS, EVENTS_STREAM } from "./provision";
export { installLastResort } from "./last-resort";
