// The public API of rawsse: the server, its options and the types a caller sees. Nothing else.

export { SseServer, type SseServerOptions, type SseServerEvents } from './server.js'
export type { SseMessage } from './sse-encode.js'
export type { ClientView, Target } from './clients.js'
export type { AuthUser, AuthRequest, Authenticate, UserEntry } from './auth.js'
export type { Bus, BusEvent, BusSubscriber } from './bus.js'
export { LocalBus } from './bus.js'
export type { Stats, DropReason } from './metrics.js'
export { SseClient, SseClientError, type SseClientOptions, type SseClientEvents, type SseClientErrorKind, type SseEvent, type SseReadyState } from './sse-client.js'
export { SseParser, SseParseError, type SseParserHandler, type SseParserOptions, type SseParseErrorType } from './sse-parse.js'
