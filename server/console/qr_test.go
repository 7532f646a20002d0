package console

import (
	"image"
	"image/color"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
	goqr "github.com/piglig/go-qr"
)

// svgModules reads the dark modules back out of an SVG qrSVG drew: its
// viewBox gives the size, its path one run of squares per "M x y h n".
func svgModules(t *testing.T, svg string) [][]bool {
	t.Helper()
	m := regexp.MustCompile(`viewBox="0 0 (\d+) (\d+)"`).FindStringSubmatch(svg)
	if m == nil || m[1] != m[2] {
		t.Fatalf("no square viewBox in %.200s", svg)
	}
	n, _ := strconv.Atoi(m[1])
	grid := make([][]bool, n)
	for i := range grid {
		grid[i] = make([]bool, n)
	}
	d := regexp.MustCompile(` d="([^"]*)"`).FindStringSubmatch(svg)
	if d == nil {
		t.Fatal("no path in the SVG")
	}
	for _, run := range regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-(\d+)z`).FindAllStringSubmatch(d[1], -1) {
		x, _ := strconv.Atoi(run[1])
		y, _ := strconv.Atoi(run[2])
		w, _ := strconv.Atoi(run[3])
		for i := range w {
			grid[y][x+i] = true
		}
	}
	if rest := regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-(\d+)z`).ReplaceAllString(d[1], ""); rest != "" {
		t.Fatalf("path holds more than runs of squares: %.80q", rest)
	}
	return grid
}

// rasterize draws modules at scale pixels each, as a scanner would see a
// crisp screen.
func rasterize(grid [][]bool, scale int) image.Image {
	n := len(grid)
	img := image.NewGray(image.Rect(0, 0, n*scale, n*scale))
	for y := range n * scale {
		for x := range n * scale {
			c := color.Gray{Y: 255}
			if grid[y/scale][x/scale] {
				c = color.Gray{Y: 0}
			}
			img.SetGray(x, y, c)
		}
	}
	return img
}

// TestQRSVG: the SVG the codes page shows decodes back to the enrolment
// link, in byte mode at error correction level M, with a quiet zone.
func TestQRSVG(t *testing.T) {
	for _, server := range []string{"http://127.0.0.1:8080", "https://diary.example.org", "https://a-much-longer-host-name.research.example.ac.uk:8443"} {
		link := study.EnrolLink(server, "K7MPQ-3XRTA")
		svg, err := qrSVG(link, "QR code for PN-A")
		if err != nil {
			t.Fatal(err)
		}
		s := string(svg)
		if strings.Contains(s, "style") || strings.Contains(s, "<script") {
			t.Fatal("the SVG carries style or script, which the console's CSP refuses")
		}
		if !strings.Contains(s, `role="img"`) || !strings.Contains(s, `aria-label="QR code for PN-A"`) {
			t.Fatal("the SVG has no accessible name")
		}
		grid := svgModules(t, s)
		for i := range grid {
			for _, edge := range []bool{grid[i][0], grid[i][qrQuiet-1], grid[0][i], grid[len(grid)-1][i]} {
				if edge {
					t.Fatal("a dark module in the quiet zone")
				}
			}
		}
		res, err := goqr.DecodeDetailed(rasterize(grid, 4))
		if err != nil {
			t.Fatalf("%s: the QR code does not decode: %v", server, err)
		}
		if res.Text != link {
			t.Fatalf("decoded %q, want %q", res.Text, link)
		}
		if res.Ecc != goqr.Medium {
			t.Fatalf("error correction %v, want M", res.Ecc)
		}
		for _, seg := range res.Segments {
			if seg.Mode != 4 {
				t.Fatalf("segment mode %d, want byte mode (4)", seg.Mode)
			}
		}
	}
}
