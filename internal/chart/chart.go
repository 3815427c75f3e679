// Package chart draws line and scatter charts as PNG images with the
// standard library's image packages and a fixed-size bitmap font: axes
// with round ticks, a grid, one colour and marker per series, and the
// legend beside the axes, never over the data.
package chart

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"os"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Point is one (x, y) value.
type Point struct{ X, Y float64 }

// Series is one named set of points, joined by a line unless NoLine.
type Series struct {
	Name   string
	Points []Point
	NoLine bool
	// Big draws the markers larger (a reference point such as a full cache).
	Big bool
}

// Chart is a whole figure. Zero limits are taken from the data (with 0
// included on both axes, so ratios read truthfully).
type Chart struct {
	Title, XLabel, YLabel  string
	Series                 []Series
	XMin, XMax, YMin, YMax float64
	Width, Height          int // pixels; 0: 1000 × 640
}

// palette holds ten colours that differ in hue and lightness; with seven
// marker shapes, seventy series stay distinct.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255},
	{140, 86, 75, 255}, {227, 119, 194, 255}, {90, 90, 90, 255}, {188, 189, 34, 255}, {23, 190, 207, 255},
}

// Style returns the colour and marker of series i: colours cycle fastest,
// so neighbours in a legend differ in colour, and each round of colours
// takes the next marker.
func Style(i int) (color.RGBA, Marker) {
	return palette[i%len(palette)], Marker((i / len(palette)) % int(markerCount))
}

// Marker is a point's shape.
type Marker int

// The marker shapes.
const (
	Circle Marker = iota
	Square
	Triangle
	Diamond
	Cross
	Plus
	Ring
	markerCount
)

const (
	charW, lineH = 7, 13 // basicfont.Face7x13
	margin       = 12
)

// WriteFile renders the chart to a PNG file.
func (c *Chart) WriteFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := c.WritePNG(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WritePNG renders the chart as PNG to w.
func (c *Chart) WritePNG(w io.Writer) error {
	img, err := c.Render()
	if err != nil {
		return err
	}
	return png.Encode(w, img)
}

// Render draws the chart.
func (c *Chart) Render() (*image.RGBA, error) {
	width, height := c.Width, c.Height
	if width == 0 {
		width, height = 1000, 640
	}
	xmin, xmax, ymin, ymax, ok := c.limits()
	if !ok {
		return nil, fmt.Errorf("chart %q: no finite points", c.Title)
	}
	legendW := 0
	for _, s := range c.Series {
		legendW = max(legendW, len(s.Name)*charW+30)
	}
	legendW = min(legendW, width/3)
	// Legend rows beyond the plot's height grow the canvas.
	height = max(height, 4*lineH+len(c.Series)*(lineH+3)+2*margin)
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)

	xticks, yticks := ticks(xmin, xmax), ticks(ymin, ymax)
	ytickW := 0
	for _, t := range yticks {
		ytickW = max(ytickW, len(label(t))*charW)
	}
	area := image.Rect(margin+lineH+6+ytickW+6, margin+2*lineH, width-margin-legendW-margin, height-margin-3*lineH)
	if area.Dx() < 50 || area.Dy() < 50 {
		return nil, fmt.Errorf("chart %q: %d×%d pixels leave no room for the axes", c.Title, width, height)
	}
	px := func(x float64) int { return area.Min.X + int(math.Round((x-xmin)/(xmax-xmin)*float64(area.Dx()))) }
	py := func(y float64) int { return area.Max.Y - int(math.Round((y-ymin)/(ymax-ymin)*float64(area.Dy()))) }

	grid, axis, ink := color.RGBA{225, 225, 225, 255}, color.RGBA{60, 60, 60, 255}, color.RGBA{0, 0, 0, 255}
	for _, t := range xticks {
		x := px(t)
		vline(img, x, area.Min.Y, area.Max.Y, grid)
		vline(img, x, area.Max.Y, area.Max.Y+4, axis)
		s := label(t)
		text(img, x-len(s)*charW/2, area.Max.Y+4+lineH, s, ink)
	}
	for _, t := range yticks {
		y := py(t)
		hline(img, area.Min.X, area.Max.X, y, grid)
		hline(img, area.Min.X-4, area.Min.X, y, axis)
		s := label(t)
		text(img, area.Min.X-6-len(s)*charW, y+lineH/2-2, s, ink)
	}
	hline(img, area.Min.X, area.Max.X, area.Max.Y, axis)
	vline(img, area.Min.X, area.Min.Y, area.Max.Y, axis)
	text(img, (area.Min.X+area.Max.X-len(c.Title)*charW)/2, margin+lineH-2, c.Title, ink)
	text(img, (area.Min.X+area.Max.X-len(c.XLabel)*charW)/2, area.Max.Y+4+2*lineH+4, c.XLabel, ink)
	vtext(img, margin, (area.Min.Y+area.Max.Y+len(c.YLabel)*charW)/2, c.YLabel, ink)

	clip := img.SubImage(area.Inset(-4)).(*image.RGBA)
	for i, s := range c.Series {
		col, mk := Style(i)
		if !s.NoLine {
			for j := 1; j < len(s.Points); j++ {
				a, b := s.Points[j-1], s.Points[j]
				if finite(a) && finite(b) {
					line(clip, px(a.X), py(a.Y), px(b.X), py(b.Y), col)
				}
			}
		}
		r := 4
		if s.Big {
			r = 7
		}
		for _, p := range s.Points {
			if finite(p) {
				marker(clip, px(p.X), py(p.Y), r, mk, col)
			}
		}
	}
	lx, ly := width-margin-legendW, area.Min.Y
	for i, s := range c.Series {
		col, mk := Style(i)
		y := ly + i*(lineH+3)
		hline(img, lx, lx+18, y, col)
		marker(img, lx+9, y, 4, mk, col)
		name := s.Name
		if maxc := (legendW - 26) / charW; len(name) > maxc && maxc > 1 {
			name = name[:maxc-1] + "~"
		}
		text(img, lx+24, y+lineH/2-2, name, ink)
	}
	return img, nil
}

func finite(p Point) bool {
	return !math.IsNaN(p.X) && !math.IsInf(p.X, 0) && !math.IsNaN(p.Y) && !math.IsInf(p.Y, 0)
}

// limits returns the axes' ranges: the chart's own where set, else the
// data's with 0 included and 5 % of headroom.
func (c *Chart) limits() (xmin, xmax, ymin, ymax float64, ok bool) {
	xmin, xmax, ymin, ymax = 0, math.Inf(-1), 0, math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !finite(p) {
				continue
			}
			ok = true
			xmin, xmax = min(xmin, p.X), max(xmax, p.X)
			ymin, ymax = min(ymin, p.Y), max(ymax, p.Y)
		}
	}
	if !ok {
		return
	}
	xmax, ymax = xmax+0.05*(xmax-xmin), ymax+0.05*(ymax-ymin)
	if c.XMin != 0 || c.XMax != 0 {
		xmin, xmax = c.XMin, c.XMax
	}
	if c.YMin != 0 || c.YMax != 0 {
		ymin, ymax = c.YMin, c.YMax
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	if ymax <= ymin {
		ymax = ymin + 1
	}
	return
}

// ticks returns round values (1, 2 or 5 × 10^k apart) across [lo, hi],
// four to ten of them.
func ticks(lo, hi float64) []float64 {
	span := hi - lo
	base := math.Pow(10, math.Floor(math.Log10(span))-1)
	step := base * 100
	for _, m := range []float64{1, 2, 5, 10, 20, 50, 100} {
		if span/(base*m) <= 8 {
			step = base * m
			break
		}
	}
	var out []float64
	for t := math.Ceil(lo/step) * step; t <= hi+step*1e-9; t += step {
		out = append(out, math.Round(t/step)*step)
	}
	return out
}

func label(v float64) string {
	if v == 0 {
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

var face = basicfont.Face7x13

// text writes s with its baseline at y.
func text(img draw.Image, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// vtext writes s turned a quarter left, reading upwards from (x, y).
func vtext(img *image.RGBA, x, y int, s string, c color.Color) {
	tmp := image.NewRGBA(image.Rect(0, 0, len(s)*charW, lineH))
	text(tmp, 0, lineH-3, s, c)
	b := tmp.Bounds()
	for ty := b.Min.Y; ty < b.Max.Y; ty++ {
		for tx := b.Min.X; tx < b.Max.X; tx++ {
			if _, _, _, a := tmp.At(tx, ty).RGBA(); a > 0 {
				img.Set(x+ty, y-tx, tmp.At(tx, ty))
			}
		}
	}
}

func hline(img draw.Image, x0, x1, y int, c color.Color) {
	for x := x0; x <= x1; x++ {
		img.Set(x, y, c)
	}
}

func vline(img draw.Image, x, y0, y1 int, c color.Color) {
	for y := y0; y <= y1; y++ {
		img.Set(x, y, c)
	}
}

// line draws a two-pixel-wide segment (Bresenham, doubled).
func line(img draw.Image, x0, y0, x1, y1 int, c color.Color) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.Set(x0, y0, c)
		img.Set(x0+1, y0, c)
		img.Set(x0, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

// marker draws shape m of radius r centred on (x, y).
func marker(img draw.Image, x, y, r int, m Marker, c color.Color) {
	for dy := -r; dy <= r; dy++ {
		for dx := -r; dx <= r; dx++ {
			var in bool
			switch m {
			case Circle:
				in = dx*dx+dy*dy <= r*r
			case Square:
				in = abs(dx) < r && abs(dy) < r
			case Triangle:
				in = dy >= -r && dy <= r && 2*abs(dx) <= dy+r
			case Diamond:
				in = abs(dx)+abs(dy) <= r
			case Cross:
				in = abs(abs(dx)-abs(dy)) <= 1
			case Plus:
				in = abs(dx) <= 1 || abs(dy) <= 1
			case Ring:
				d := dx*dx + dy*dy
				in = d <= r*r && d >= (r-2)*(r-2)
			}
			if in {
				img.Set(x+dx, y+dy, c)
			}
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
