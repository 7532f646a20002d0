// Package client is the embeddable diarysync client: a local SQLite
// replica in one file, an outbox of changes waiting to be pushed, and the
// sync loop. It is pure Go, so it builds for Android and iOS.
//
// Every write is local and durable when the call returns; it never needs
// the network. Sync pushes the outbox in pages and pulls until caught up,
// applying each pulled page in one transaction together with the new
// cursor, so an interruption at any point resumes without loss or
// repeated work. Changes the server refuses leave the outbox for a list
// the app can show, with the reason; they never block the rest.
//
// The entry an app sees is the last state pulled from the server merged
// with the changes still in the outbox, through the same merge rules the
// server uses (package syncengine). Bodies and feedback notes are merged
// text: an app hands over the whole text (or splices, in code points or
// UTF-16 code units) and the client queues the edit, which merges with
// edits made on other devices character by character (see text.go).
package client
