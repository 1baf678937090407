// The public API of rawsse: the server, its options and the types a caller sees; the client and
// its parser. Nothing else.

export { SseServer, type SseServerOptions, type SseServerEvents, type ErrorReply, type PublishedEvent } from './server/server.js'
export type { TlsFiles } from './server/options.js'
export type { SseMessage } from './server/fanout/sse-encode.js'
export type { ChannelChange } from './wire.js'
export type { ClientView } from './server/fanout/stream.js'
export type { Target } from './server/fanout/target.js'
export type { AuthUser, AuthRequest, Authenticate, UserEntry } from './server/auth.js'
export type { JwtConfig, JwtKeySource } from './server/jwt.js'
export type { TicketIssued, TicketOptions } from './server/tickets.js'
export type { Accepted, Bus, BusDraft, BusEvent, BusNode } from './server/bus/bus.js'
export { LocalBus } from './server/bus/local.js'
export { RedisBus, type RedisBusSettings } from './server/bus/redis/redis-bus.js'
export type { Stats, DropReason } from './server/metrics.js'
export { SseClient, SseClientError, SetChannelsError, type SseClientOptions, type SseClientEvents, type SseClientErrorKind, type SseEvent, type SseReadyState } from './client/sse-client.js'
export { SseParser, SseParseError, type SseParserHandler, type SseParserOptions, type SseParseErrorType } from './client/sse-parse.js'
