// A short run of bench/fuzz.mjs in every test run, so a parser or route change that crashes on
// hostile input fails CI. The long run (100 000+ cases) is `node bench/fuzz.mjs`; its figures are in docs/budgets.md.
import t from 'tap'
import { fuzzParser, fuzzServer } from '../bench/fuzz.mjs'

t.test('the head parser never fails other than with an HTTP status, whole or split', (t) => {
  const run = fuzzParser(20_000, 7)
  t.equal(run.crashes, 0, JSON.stringify(run.firstCrash))
  t.end()
})

t.test('the server answers mutated requests without a 500 and keeps the canary stream whole', async (t) => {
  const run = await fuzzServer(2_000, 8, 8)
  t.equal(run.crashes, 0, JSON.stringify(run.firstCrash))
  t.ok(run.canaryEvents > 0, 'canary events were published')
  t.equal(run.canaryMissed, 0, 'the canary stream missed nothing')
  t.ok((run.statuses['200'] ?? 0) > 0 && (run.statuses['400'] ?? 0) > 0, 'the cases reach both accepted and refused paths')
})
