package console

import (
	"fmt"
	"html/template"
	"strings"

	goqr "github.com/piglig/go-qr"
)

// qrQuiet is the light border around a QR code, in modules: the
// standard asks for four, so that scanners find the symbol's edges.
const qrQuiet = 4

// qrModules encodes text as a QR code (byte mode, error correction level
// M: a code on a printed sheet or a scratched screen still scans) and
// returns its modules, true for dark, row by row.
func qrModules(text string) ([][]bool, error) {
	q, err := goqr.EncodeBinary([]byte(text), goqr.Medium)
	if err != nil {
		return nil, fmt.Errorf("cannot make a QR code: %w", err)
	}
	n := q.Size()
	m := make([][]bool, n)
	for y := range n {
		m[y] = make([]bool, n)
		for x := range n {
			m[y][x] = q.Module(x, y)
		}
	}
	return m, nil
}

// qrSVG renders text as an inline SVG QR code: one path of unit squares
// on a light background, drawn with attributes only (no style), so the
// console's Content-Security-Policy needs no exception. label is what a
// screen reader says of it.
func qrSVG(text, label string) (template.HTML, error) {
	m, err := qrModules(text)
	if err != nil {
		return "", err
	}
	n := len(m) + 2*qrQuiet
	var d strings.Builder
	for y, row := range m {
		for x := 0; x < len(row); x++ {
			if !row[x] {
				continue
			}
			run := 1
			for x+run < len(row) && row[x+run] {
				run++
			}
			fmt.Fprintf(&d, "M%d %dh%dv1h-%dz", x+qrQuiet, y+qrQuiet, run, run)
			x += run - 1
		}
	}
	svg := fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" class="qr" role="img" aria-label="%s" viewBox="0 0 %d %d" width="%d" height="%d" shape-rendering="crispEdges">`+
		`<rect width="%d" height="%d" fill="#ffffff"/><path fill="#000000" d="%s"/></svg>`,
		template.HTMLEscapeString(label), n, n, n*6, n*6, n, n, d.String())
	return template.HTML(svg), nil
}
