// Package client is the embeddable diarysync client: a local SQLite
// replica, an outbox of changes waiting to be pushed, and the sync loop.
package client
