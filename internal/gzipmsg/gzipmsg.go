// Package gzipmsg is the gzip compressor that the server, the client and
// diaryload give Connect: it chooses its level by the size of the
// message it is handed.
//
// Connect hands a compressor one whole message in one Write. Below
// FastBelow bytes the message is compressed at gzip.BestSpeed; at or
// above it, at gzip.DefaultCompression. Small messages are most of a
// sync's traffic (a push of a few entries, a pull page of what changed
// since the last one), and for them the default level costs about twice
// the CPU, mostly in clearing its larger tables, for a few per cent
// fewer bytes. A first sync's full pages are where bytes add up on a
// phone's network, and they keep the default level. The figures, on a
// pull page of real English text, are in the README.
package gzipmsg

import (
	"compress/gzip"
	"io"

	"connectrpc.com/connect"
)

// FastBelow is the size under which a message is compressed at
// gzip.BestSpeed.
const FastBelow = 16 << 10

// Writer is a connect.Compressor. The zero value is not ready: use New.
type Writer struct {
	dst  io.Writer
	fast *gzip.Writer
	best *gzip.Writer // made on the first large message
	cur  *gzip.Writer // chosen by the first Write after Reset
}

// New returns a Writer that writes to io.Discard until Reset.
func New() *Writer {
	return &Writer{dst: io.Discard}
}

// Reset makes the Writer compress the next message into dst.
func (w *Writer) Reset(dst io.Writer) {
	w.dst, w.cur = dst, nil
}

// Write compresses p. The first Write after Reset chooses the level by
// len(p); later ones continue the same stream.
func (w *Writer) Write(p []byte) (int, error) {
	if w.cur == nil {
		w.choose(len(p))
	}
	return w.cur.Write(p)
}

// Close finishes the gzip stream. It does not close dst.
func (w *Writer) Close() error {
	if w.cur == nil {
		w.choose(0)
	}
	err := w.cur.Close()
	w.cur = nil
	return err
}

func (w *Writer) choose(n int) {
	if n < FastBelow {
		if w.fast == nil {
			w.fast, _ = gzip.NewWriterLevel(w.dst, gzip.BestSpeed) // a valid level: no error
		} else {
			w.fast.Reset(w.dst)
		}
		w.cur = w.fast
		return
	}
	if w.best == nil {
		w.best, _ = gzip.NewWriterLevel(w.dst, gzip.DefaultCompression)
	} else {
		w.best.Reset(w.dst)
	}
	w.cur = w.best
}

// ClientOption makes a Connect client compress with a Writer, and
// decompress with gzip's own reader. It does not make the client send
// compressed messages: connect.WithSendGzip does.
func ClientOption() connect.ClientOption {
	return connect.WithAcceptCompression("gzip",
		func() connect.Decompressor { return new(gzip.Reader) },
		func() connect.Compressor { return New() },
	)
}
