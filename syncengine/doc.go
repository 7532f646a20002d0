// Package syncengine is the domain of diarysync: diary entries, the hybrid
// logical clock that orders their changes, the merge rules that make every
// replica converge, the canonical encoding and state hash that let two
// replicas compare what they hold, and the validation every change passes.
//
// It knows nothing of Connect, protobuf or SQL. The server and the client
// both merge through this package, so there is exactly one definition of
// what a replica holds after a given set of changes.
//
// # Merge rules
//
// Every scalar field of an entry (title, body, date, mood, the two sharing
// flags, deleted) is a last-writer-wins register. A write carries a Stamp,
// the pair (hybrid logical clock, replica id); the write with the greater
// stamp wins, the replica id breaking ties between equal clocks. Two writes
// with the same stamp and different values cannot come from a correct
// replica, but the rule still picks one deterministically (the greater
// value) so that even corrupt input converges.
//
// Tags are a set in which every tag is its own register holding "present"
// or "absent", so a concurrent add of "housing" and remove of "court" both
// survive, and an add and remove of the same tag resolve by stamp.
//
// Feedback items, written by supervisors, live inside the entry they are
// about, each with its own body and deleted registers.
//
// The body and feedback bodies are merged text instead (TextDoc, held in
// an Entry as a TextState): concurrent edits merge character by
// character, and the body's register is derived from the merged text.
// See "Merged text" in text.go, and Entry.Apply for how bodies written
// before merged text existed join it.
//
// Because every register is a join semilattice, applying a set of changes
// gives the same entry in any order, with any duplication and in any
// batching; Merge of two entries is commutative, associative and
// idempotent. The property tests in this package check exactly that.
package syncengine
