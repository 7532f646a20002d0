package mobile

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestGuideSnippets checks the Java and Objective-C snippets of
// docs/MOBILE.md against the bindings gobind generated: every class they
// import, every method they call, every constant of Mobile they name and
// every Objective-C selector, property and Mobile name they use exists
// in gobind's output. .ci/mobile runs gobind and then this test, with
// DIARYSYNC_GOBIND_OUT set to gobind's output directory.
func TestGuideSnippets(t *testing.T) {
	out := os.Getenv("DIARYSYNC_GOBIND_OUT")
	if out == "" {
		t.Skip("DIARYSYNC_GOBIND_OUT is not set: .ci/mobile runs gobind and sets it to gobind's output directory")
	}
	guide, err := os.ReadFile("../../docs/MOBILE.md")
	if err != nil {
		t.Fatal(err)
	}
	javaDir := filepath.Join(out, "java", "mobile")
	java := readAll(t, javaDir, ".java")
	objc := readAll(t, filepath.Join(out, "src", "gobind"), ".objc.h")
	javaCode := blocks(string(guide), "java")
	objcCode := blocks(string(guide), "objc")
	if len(javaCode) == 0 || len(objcCode) == 0 {
		t.Fatalf("docs/MOBILE.md has %d Java and %d Objective-C snippets; want some of each", len(javaCode), len(objcCode))
	}

	// Java: names the snippets use that the platform, not the bindings,
	// provides (an Android Context, String.equals, the app's own helpers).
	platform := []string{"getFilesDir", "equals", "show", "showError", "getMessage"}
	javaMethods := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*public\s+(?:static\s+)?(?:final\s+)?(?:native\s+)?[\w.<>\[\]]+\s+(\w+)\(`).FindAllStringSubmatch(java, -1) {
		javaMethods[m[1]] = true
	}
	if len(javaMethods) < 20 {
		t.Fatalf("found only %d methods in gobind's Java output; the pattern no longer matches it", len(javaMethods))
	}
	checked := 0
	for _, code := range javaCode {
		for _, m := range regexp.MustCompile(`import mobile\.(\w+);`).FindAllStringSubmatch(code, -1) {
			checked++
			if _, err := os.Stat(filepath.Join(javaDir, m[1]+".java")); err != nil {
				t.Errorf("the Java snippet imports mobile.%s, which gobind did not generate", m[1])
			}
		}
		for _, m := range regexp.MustCompile(`\.([a-z]\w*)\(`).FindAllStringSubmatch(code, -1) {
			checked++
			if !javaMethods[m[1]] && !slices.Contains(platform, m[1]) {
				t.Errorf("the Java snippet calls %s(), which gobind's Java does not declare", m[1])
			}
		}
		for _, m := range regexp.MustCompile(`\bMobile\.([A-Z]\w*)\b`).FindAllStringSubmatch(code, -1) {
			checked++
			if !regexp.MustCompile(`\b` + m[1] + `\b`).MatchString(java) {
				t.Errorf("the Java snippet names Mobile.%s, which gobind's Java does not declare", m[1])
			}
		}
	}

	// Objective-C: selectors declared by the headers, and properties.
	selectors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^[-+] \([^)]*\)\s*(.*);`).FindAllStringSubmatch(objc, -1) {
		parts := regexp.MustCompile(`(\w+):\(`).FindAllStringSubmatch(m[1], -1)
		if len(parts) == 0 {
			selectors[regexp.MustCompile(`^\w+`).FindString(m[1])] = true
			continue
		}
		var sel strings.Builder
		for _, p := range parts {
			sel.WriteString(p[1] + ":")
		}
		selectors[sel.String()] = true
	}
	for _, m := range regexp.MustCompile(`@property[^;]*?\b(\w+);`).FindAllStringSubmatch(objc, -1) {
		selectors[m[1]] = true
	}
	if len(selectors) < 20 {
		t.Fatalf("found only %d selectors in gobind's Objective-C headers; the pattern no longer matches them", len(selectors))
	}
	foundation := []string{"alloc", "init", "isEqualToString:", "localizedDescription"}
	for _, code := range objcCode {
		code = regexp.MustCompile(`//.*|#import.*`).ReplaceAllString(code, "")
		code = regexp.MustCompile(`@"[^"]*"`).ReplaceAllString(code, `@""`)
		for _, m := range regexp.MustCompile(`\b(Mobile[A-Z]\w*)`).FindAllStringSubmatch(code, -1) {
			checked++
			if !regexp.MustCompile(`\b` + m[1] + `\b`).MatchString(objc) {
				t.Errorf("the Objective-C snippet names %s, which gobind's headers do not declare", m[1])
			}
		}
		// Innermost message sends first, each replaced by a plain name,
		// until none is left.
		send := regexp.MustCompile(`\[\s*[\w.]+\s+([^\[\]]*)\]`)
		for send.MatchString(code) {
			for _, m := range send.FindAllStringSubmatch(code, -1) {
				sel := ""
				for _, p := range regexp.MustCompile(`(\w+):`).FindAllStringSubmatch(m[1], -1) {
					sel += p[1] + ":"
				}
				if sel == "" {
					sel = regexp.MustCompile(`^\w+`).FindString(m[1])
				}
				checked++
				if !selectors[sel] && !slices.Contains(foundation, sel) {
					t.Errorf("the Objective-C snippet sends %s, which gobind's headers do not declare", sel)
				}
			}
			code = send.ReplaceAllString(code, "x")
		}
		for _, m := range regexp.MustCompile(`\b[a-z]\w*\.([a-z]\w*)\b`).FindAllStringSubmatch(code, -1) {
			checked++
			if !selectors[m[1]] && !slices.Contains(foundation, m[1]) {
				t.Errorf("the Objective-C snippet reads the property %s, which gobind's headers do not declare", m[1])
			}
		}
	}
	t.Logf("%d names of the guide's snippets found in gobind's output", checked)
}

// blocks returns the fenced code blocks of a Markdown text in one
// language.
func blocks(md, lang string) []string {
	var out []string
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(md, -1) {
		out = append(out, m[1])
	}
	return out
}

// readAll returns the files of dir whose names end in suffix, joined.
func readAll(t *testing.T, dir, suffix string) string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if err != nil || len(names) == 0 {
		t.Fatalf("no %s files in %s (%v)", suffix, dir, err)
	}
	var b strings.Builder
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
		b.WriteByte('\n')
	}
	return b.String()
}
