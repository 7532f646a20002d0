package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/diarysync/diarysync/syncengine"
	"golang.org/x/crypto/argon2"
)

// HashParams are the argon2id parameters of new passphrase hashes. A
// stored hash carries its own, so they can be raised later without
// locking anyone out.
type HashParams struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// DefaultHashParams are OWASP's first recommended argon2id setting
// (19 MiB, two passes, one thread): memory-hard enough that a stolen
// table of hashes is expensive to guess at, cheap enough that a sign-in
// takes a few tens of milliseconds.
var DefaultHashParams = HashParams{Memory: 19 * 1024, Time: 2, Threads: 1}

const (
	saltBytes = 16
	keyBytes  = 32
	// maxHashMemory bounds the memory a stored hash may ask for when it
	// is checked, so a tampered row cannot make the server allocate
	// gigabytes.
	maxHashMemory = 256 * 1024
)

// hasher hashes and checks passphrases with argon2id, at most limit at a
// time: each costs Memory KiB, so a flood of sign-in attempts waits for
// a turn instead of exhausting the server's memory.
type hasher struct {
	params HashParams
	sem    chan struct{}

	dummyOnce sync.Once
	dummy     string
}

func newHasher(p HashParams, limit int) *hasher {
	return &hasher{params: p, sem: make(chan struct{}, limit)}
}

// errBusy is the answer when every hashing slot stays taken for as long
// as the request may wait.
var errBusy = syncengine.Errorf(syncengine.EUNAVAILABLE, "the server is busy checking other sign-ins: try again in a moment")

func (h *hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return errBusy
	}
}

func (h *hasher) release() { <-h.sem }

// hash returns the PHC string of a new argon2id hash of the passphrase:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>.
func (h *hasher) hash(ctx context.Context, passphrase string) (string, error) {
	salt := make([]byte, saltBytes)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("cannot make a salt: %w", err)
	}
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	p := h.params
	key := argon2.IDKey([]byte(passphrase), salt, p.Time, p.Memory, p.Threads, keyBytes)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// verify reports whether the passphrase matches the stored PHC string.
func (h *hasher) verify(ctx context.Context, passphrase, encoded string) (bool, error) {
	p, salt, key, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	got := argon2.IDKey([]byte(passphrase), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// burn spends the time and memory of checking a passphrase against a
// hash that matches nothing, so that an unknown study code takes as long
// to refuse as a wrong passphrase.
func (h *hasher) burn(ctx context.Context, passphrase string) error {
	h.dummyOnce.Do(func() {
		h.dummy, _ = h.hash(context.Background(), "no passphrase matches this hash")
	})
	if h.dummy == "" {
		return errors.New("cannot make the comparison hash")
	}
	_, err := h.verify(ctx, passphrase, h.dummy)
	return err
}

func decodeHash(s string) (HashParams, []byte, []byte, error) {
	var p HashParams
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errors.New("the stored passphrase hash is not an argon2id hash")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, fmt.Errorf("the stored passphrase hash has version %q, not %d", parts[2], argon2.Version)
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, fmt.Errorf("the stored passphrase hash has bad parameters %q", parts[3])
	}
	if p.Memory == 0 || p.Memory > maxHashMemory || p.Time == 0 || p.Time > 16 || p.Threads == 0 {
		return p, nil, nil, fmt.Errorf("the stored passphrase hash has parameters out of range %q", parts[3])
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	key, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, errors.New("the stored passphrase hash is damaged")
	}
	return p, salt, key, nil
}
