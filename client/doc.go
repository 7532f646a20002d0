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
// server uses (package syncengine).
package client
