// Shared by the demo pages: the token, the EventSource stream URL, POST /publish, the navigation
// and safe text output. Plain ES module, no build step, no dependency. The streams themselves are
// RawSse's (/rawsse-client.js), but for the monitor page, which keeps EventSource to show the difference.

const TOKEN_KEY = 'rawsse-token'

/**
 * The token comes from the URL fragment (`#token=...`), which the browser never sends to any
 * server, and is kept in sessionStorage: for this tab only, gone when the tab closes. The
 * fragment is then taken out of the address bar, so it does not end up in the history,
 * bookmarks or a screenshot.
 */
function readToken() {
  const params = new URLSearchParams(location.hash.slice(1))
  const fromHash = params.get('token')
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash)
    params.delete('token')
    const rest = params.toString()
    history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''))
  }
  return fromHash || sessionStorage.getItem(TOKEN_KEY) || ''
}

export const token = readToken()

/**
 * `/events/TOKEN?channel=...`, for EventSource, which cannot send a header: the token has to go in
 * the path. `params` is a list of [name, value] pairs (channel may repeat). RawSse needs none of
 * this: its URL is `/events`, the token goes in `Authorization`.
 */
export function streamUrl(params = []) {
  const q = new URLSearchParams(params).toString()
  return `/events/${encodeURIComponent(token)}${q ? '?' + q : ''}`
}

/**
 * POST /publish with the query `fields` ({channel, event, ...}) and `data` as the body. The body
 * is sent as text/plain, so the server takes it as the data whatever it holds. Resolves to
 * {ok, status, delivered, error}; never throws, a network failure is an answer too.
 */
export async function publish(fields, data) {
  const q = new URLSearchParams(Object.entries(fields).filter(([, v]) => v !== undefined && v !== '')).toString()
  try {
    const res = await fetch(`/publish${q ? '?' + q : ''}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain; charset=utf-8' },
      body: data,
    })
    const answer = await res.json().catch(() => ({}))
    return { ok: res.ok, status: res.status, delivered: answer.delivered ?? 0, error: answer.error ?? res.statusText }
  } catch (err) {
    return { ok: false, status: 0, delivered: 0, error: String(err) }
  }
}

/** The words a publish answer is shown with. */
export function describePublish(r) {
  if (r.ok) return `delivered to ${r.delivered} ${r.delivered === 1 ? 'client' : 'clients'}`
  if (r.status === 401) return 'refused: the token is not known (401)'
  if (r.status === 403) return 'refused: this token may not publish (403); use the URL rawsse printed, or a --publish-token'
  return `error ${r.status || 'network'}: ${r.error}`
}

const PAGES = [
  ['index.html', 'Hub'],
  ['chat.html', 'Chat'],
  ['monitor.html', 'Monitor'],
  ['progress.html', 'Progress'],
]

/**
 * Fill `<nav id="nav">`. The links carry the token in their fragment, so a page opened in a new
 * tab (which starts with empty sessionStorage) is connected too.
 */
export function fillNav() {
  const nav = document.getElementById('nav')
  const here = location.pathname.split('/').pop() || 'index.html'
  for (const [file, label] of PAGES) {
    const a = document.createElement('a')
    a.href = token ? `${file}#token=${encodeURIComponent(token)}` : file
    a.textContent = label
    if (file === here) a.setAttribute('aria-current', 'page')
    nav.append(a)
  }
}

/** Show a connection state ('connecting', 'connected', 'disconnected') in a status element. */
export function setStatus(el, state, detail = '') {
  el.dataset.state = state
  el.textContent = detail ? `${state} · ${detail}` : state
}

/**
 * The state after an `error` of an EventSource or a RawSse (the same readyState numbers):
 * CONNECTING means it is retrying on its own, CLOSED (2) that it gave up.
 */
export function stateAfterError(source) {
  return source.readyState === 2 ? 'disconnected' : 'connecting'
}

/**
 * An element with `text` as its text: textContent, never innerHTML, so nothing a publisher or
 * another user sends becomes markup.
 */
export function el(tag, text = '', className = '') {
  const e = document.createElement(tag)
  if (text) e.textContent = text
  if (className) e.className = className
  return e
}

/** JSON.parse that gives null instead of throwing: event data comes from anyone who may publish. */
export function parseJson(text) {
  try {
    return JSON.parse(text)
  } catch {
    return null
  }
}

/** The "no token" explanation, shown where the page would have connected. */
export const NO_TOKEN = 'no token: open the demo URL that rawsse printed at start-up (it ends in #token=...)'

export function clock(date = new Date()) {
  return date.toLocaleTimeString([], { hour12: false })
}
