// Replays an editing trace one edit at a time into a Y.Text and prints
// edits per second, to compare with syncengine's
// BenchmarkTextReplayAutomergePaper on the same machine (see the README,
// "Merged text").
//
//	cd bench/yjs && npm ci && node replay.mjs [trace.json.gz] [runs]
//
// The trace defaults to ../shared/traces/automerge-paper.json.gz beside
// the repository.
import { readFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'
import * as Y from 'yjs'

const path = process.argv[2] || fileURLToPath(new URL('../../../shared/traces/automerge-paper.json.gz', import.meta.url))
const runs = Number(process.argv[3] ?? 5)
const trace = JSON.parse(gunzipSync(readFileSync(path)).toString('utf8'))

// Flatten the patches once, outside the timed loop.
const edits = []
for (const txn of trace.txns) for (const p of txn.patches) edits.push(p)

// Positions in the trace count Unicode code points; Y.Text counts UTF-16
// code units. automerge-paper is all BMP text, so the two agree there.
const replay = () => {
  const doc = new Y.Doc()
  const text = doc.getText('body')
  for (const [pos, del, ins] of edits) {
    if (del > 0) text.delete(pos, del)
    if (ins !== '') text.insert(pos, ins)
  }
  return text.toString()
}

const version = JSON.parse(readFileSync(new URL('./node_modules/yjs/package.json', import.meta.url), 'utf8')).version
console.log(`node ${process.version}, yjs ${version}, ${edits.length} edits`)
for (let i = 0; i < runs; i++) {
  const t0 = process.hrtime.bigint()
  const out = replay()
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  if (out !== trace.endContent) throw new Error('replay did not give endContent')
  console.log(`run ${i + 1}: ${edits.length} edits in ${ms.toFixed(0)} ms = ${Math.round(edits.length / (ms / 1000))} edits/s`)
}
