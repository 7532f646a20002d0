package study_test

import (
	"fmt"
	"testing"

	"github.com/diarysync/diarysync/study"
)

// BenchmarkRedact de-identifies a diary entry's body of about 450 bytes
// with the default patterns and a list of 50 terms, as every reading of
// an export with bodies does once per entry:
//
//	go test -run '^$' -bench Redact -count 6 ./study | benchstat -
func BenchmarkRedact(b *testing.B) {
	terms := []study.RedactTerm{{Term: "Jane Doe"}}
	for i := 1; i < 50; i++ {
		terms = append(terms, study.RedactTerm{Term: fmt.Sprintf("Client%02d Surname", i)})
	}
	for _, bc := range []struct{ name, body string }{
		// The body of the export benchmarks in package server.
		{"phone+name", "Met J. outside the hostel this morning. She had been moved again and lost her paperwork for the housing appointment, so we spent an hour on the phone to the council. She was calm but tired. I noticed I wanted to fix everything for her, which is something I know from my own time in hostels. Talked it through; we have a plan for Thursday. Rang her back on 07700 900123 at four; Jane Doe from the council joined the call."},
		{"nothing", "Met J. outside the hostel this morning. She had been moved again and lost her paperwork for the housing appointment, so we spent an hour on the phone to the council. She was calm but tired. I noticed I wanted to fix everything for her, which is something I know from my own time in hostels. Talked it through; we have a plan for Thursday. Rang her back in the afternoon; someone from the council joined the call."},
	} {
		for _, p := range append([]study.RedactPattern{{Name: "all"}}, study.DefaultRedactPatterns()...) {
			setting := study.DefaultRedaction()
			list := terms
			if p.Name != "all" {
				setting.Patterns, list = []study.RedactPattern{p}, nil
			}
			rd, err := study.NewRedactor(setting, list)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(bc.name+"/"+p.Name, func(b *testing.B) {
				b.SetBytes(int64(len(bc.body)))
				for range b.N {
					rd.Redact(bc.body)
				}
			})
		}
	}
}
