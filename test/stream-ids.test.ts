// Stream ids a block at a time (src/server/bus/stream-ids.ts), as the in-process bus, a worker and
// a Redis node take them: the next block asked for at half of the one in use, a spare handed on
// whole, and 503 with Retry-After when the next block has not come.

import t from 'tap'
import { HttpError } from '../src/server/http/errors.js'
import { StreamIds } from '../src/server/bus/stream-ids.js'

t.test('a block of 4: the next is asked for at half, used once the first is spent; none come: 503 with Retry-After', async (t) => {
  let asks = 0
  const ids = new StreamIds(() => asks++)
  ids.give([5, 8])
  t.same([ids.take(), ids.take(), asks], [5, 6, 0], 'no ask before half')
  t.same([ids.take(), asks], [7, 1], 'asked at half of the block')
  t.same([ids.take(), asks], [8, 1], 'once')
  ids.give([13, 16])
  t.same([ids.take(), ids.take(), ids.take(), asks], [13, 14, 15, 2], 'the next block, asked again at its half')
  ids.take()
  const refused = (() => {
    try {
      ids.take()
      return null
    } catch (err) {
      return err
    }
  })()
  t.ok(refused instanceof HttpError)
  const e = refused as HttpError
  t.same([e.status, e.message, e.headers], [503, 'no stream ids left; try again', [['Retry-After', '1']]], '503 with Retry-After')
  t.equal(asks, 3, 'and asked again: the answer may have been lost')
  ids.give([21, 24])
  t.equal(ids.take(), 21, 'a block that comes after the refusal is used at once')
})

t.test('a source that answers at once (the in-process counter) never refuses', async (t) => {
  let last = 0
  const ids: StreamIds = new StreamIds(() => ids.give([last + 1, (last += 2)]))
  t.same(
    Array.from({ length: 7 }, () => ids.take()),
    [1, 2, 3, 4, 5, 6, 7],
  )
})

t.test('the spare is handed on whole (a primary gives it to a worker) and another is asked for; the block in use stays', async (t) => {
  let asks = 0
  const ids = new StreamIds(() => asks++)
  ids.give([1, 4])
  ids.give([5, 8])
  t.same([ids.takeSpare(), asks], [[5, 8], 1])
  t.same([ids.takeSpare(), asks], [null, 1], 'none while the one asked for has not come; not asked twice')
  ids.give([9, 12])
  t.same([ids.takeSpare(), asks], [[9, 12], 2])
  t.equal(ids.take(), 1, 'this process’s own streams go on with their block')
})
