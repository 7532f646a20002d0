package study

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

func TestCodes(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		seen := map[string]bool{}
		for range 100 {
			code, err := NewCode(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if len(code) != 11 || code[5] != '-' || strings.Trim(strings.Replace(code, "-", "", 1), CodeAlphabet) != "" {
				t.Fatalf("code %q is not two groups of five from the alphabet", code)
			}
			if seen[code] {
				t.Fatalf("code %q came twice", code)
			}
			seen[code] = true
			// A code works however it is typed.
			typed := strings.ToLower(code[:5]) + " " + code[6:]
			if err := CheckCodeForm(typed); err != nil {
				t.Fatalf("%q: %v", typed, err)
			}
			if !bytes.Equal(CodeHash(typed), CodeHash(code)) {
				t.Fatalf("%q and %q hash differently", typed, code)
			}
		}
	})
	for _, bad := range []string{"", "ABCDE", "ABCDE-FGHJK-M", "ABCDE-FGHJ0", "ABCDE-FGHJI", strings.Repeat("A", MaxCodeBytes+1)} {
		t.Run("ErrForm", func(t *testing.T) {
			if err := CheckCodeForm(bad); err != ErrBadCode {
				t.Fatalf("%q: got %v, want ErrBadCode", bad, err)
			}
		})
	}
}

func TestCheckCodeUsable(t *testing.T) {
	expires := now.Add(time.Hour)
	for _, tc := range []struct {
		name string
		c    IssuedCode
		at   time.Time
		want string
	}{
		{"OK", IssuedCode{Expires: expires, UserActive: true}, now, ""},
		{"ErrUsed", IssuedCode{Expires: expires, Used: true, UserActive: true}, now, "already used"},
		{"ErrExpired", IssuedCode{Expires: expires, UserActive: true}, expires, "expired"},
		{"ErrDeactivated", IssuedCode{Expires: expires}, now, "deactivated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCodeUsable(tc.c, tc.at)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if syncengine.ErrorCode(err) != syncengine.EUNAUTHENTICATED || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want unauthenticated %q", err, tc.want)
			}
		})
	}
}

func TestCodeTTL(t *testing.T) {
	if d, err := CodeTTL(0); err != nil || d != DefaultCodeTTL {
		t.Fatalf("CodeTTL(0) = %v, %v", d, err)
	}
	for _, bad := range []time.Duration{time.Second, MaxCodeTTL + time.Second, -time.Hour} {
		if _, err := CodeTTL(bad); syncengine.ErrorCode(err) != syncengine.EINVALID {
			t.Fatalf("CodeTTL(%v): got %v, want invalid", bad, err)
		}
	}
}

func TestTokens(t *testing.T) {
	secret, hash, err := NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(hash, []byte(secret)) || !bytes.Equal(hash, SecretHash(secret)) {
		t.Fatal("the stored hash is not the secret's SHA-256")
	}
	device := "0190b3c2-7a6e-7cc1-9d2f-1b2c3d4e5f60"
	dev, sec, ok := ParseToken(MakeToken(device, secret))
	if !ok || dev != device || sec != secret {
		t.Fatalf("ParseToken(MakeToken) = %q %q %v", dev, sec, ok)
	}
	for _, bad := range []string{"", "ds1.", "ds2." + device + "." + secret, "ds1." + device + secret, "ds1." + device[:35] + "." + secret, "ds1." + device + "." + secret[:42]} {
		if _, _, ok := ParseToken(bad); ok {
			t.Fatalf("ParseToken(%q) accepted it", bad)
		}
	}
}

func TestDeviceName(t *testing.T) {
	if n, err := DeviceName("  "); err != nil || n != "device" {
		t.Fatalf("DeviceName(blank) = %q, %v", n, err)
	}
	if n, err := DeviceName(" Work phone "); err != nil || n != "Work phone" {
		t.Fatalf("got %q, %v", n, err)
	}
	if _, err := DeviceName(strings.Repeat("x", MaxDeviceNameBytes+1)); syncengine.ErrorCode(err) != syncengine.ETOOLARGE {
		t.Fatalf("long name: got %v", err)
	}
}
