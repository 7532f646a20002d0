package study

import "github.com/diarysync/diarysync/syncengine"

// A navigator's device that pushes and then pulls would get back, in the
// pull, every entry it has just pushed: its own changes, which it holds
// already. Stores leave those echoes out of the pusher's pulls, with two
// pieces of bookkeeping:
//
//   - Each entry names its echo device: the device whose pushes are the
//     only changes to it since a version that device had pulled. Its
//     replica holds the entry exactly as the server does, so a pull by
//     that device leaves the entry out. Every other write to the entry
//     (another device's push, a change the server makes, approval,
//     erasure) clears the name.
//   - Each device has a count of its changes the server holds (Applied
//     outcomes). The device counts along (PullRequest.OwnChanges) and a
//     pull leaves echoes out only while the two counts agree: a replica
//     restored from a backup, or one that lost its data, lacks some of
//     its own changes, knows a smaller count, and gets every entry until
//     a last page gives it the server's count again.
//
// Why the version the device had pulled is one it holds: a push says
// which cursor the device had applied pages up to when it sent it
// (Incoming.Seen). The entry's version before the push, at sequence
// number s, is the newest there is, so when Seen >= s the page that
// covered s was read after s was written and before this push: it found
// the entry at s and brought it to the device.

// EchoBefore is what a store knows of an entry before a push writes it.
type EchoBefore struct {
	Exists bool
	Owner  int64
	Seq    int64 // the sequence number of its current version
	Echo   int64 // its echo device, or 0
}

// EchoWrite follows what one push does to one entry, for its echo device.
// The zero value is a push that has applied nothing to it yet.
type EchoWrite struct {
	applied bool
	impure  bool  // some applied change is not held as the device sent it
	seen    int64 // the least Incoming.Seen of the applied changes
}

// Note notes one change the push applied to the entry: in is the pushed
// change, d the decision ApplyDecision returned and record the change it
// said to record. A change the server recorded as something other than
// what the device sent (a whole text made an edit of the merged text),
// or one that holds the entry back, leaves the device's replica unlike
// the server's.
func (w *EchoWrite) Note(in *Incoming, d Decision, record *syncengine.Change) {
	if record != &in.Change || d.Hold {
		w.impure = true
	}
	if !w.applied || in.Seen < w.seen {
		w.seen = in.Seen
	}
	w.applied = true
}

// Device returns the entry's echo device once the push by who is written:
// who's device when every change the push applied came from it as it
// holds them, the entry is who's own, and the device already was its
// echo device or had pulled the version the push builds on; else 0.
func (w *EchoWrite) Device(who *Identity, b EchoBefore) int64 {
	if !w.applied || w.impure || who.Role != RoleNavigator || who.Pending || b.Owner != who.UserID {
		return 0
	}
	if b.Exists && b.Echo != who.DeviceID && w.seen < b.Seq {
		return 0
	}
	return who.DeviceID
}

// LeavesOut says whether a pull by who, whose device says it knows
// known of its changes (PullRequest.OwnChanges) where the server holds
// applied, leaves out an entry whose echo device is echo.
func LeavesOut(who *Identity, req *PullRequest, applied, echo int64) bool {
	return echo != 0 && echo == who.DeviceID && req.OwnChangesKnown && req.OwnChanges == applied
}
