package webui

import (
	"fmt"
	"html/template"
	"math"
	"strings"
)

// barChart is a daily series drawn as an SVG bar chart on the server, so
// the dashboard needs no script.
type barChart struct {
	Title  string
	Unit   string // shown after the maximum, such as "min"
	Labels []string
	Values []float64
}

// Geometry of a chart, in SVG user units.
const (
	chartWidth  = 560
	chartHeight = 180
	chartLeft   = 44 // room for the axis labels
	chartBottom = 22 // room for the day labels
	chartTop    = 16 // room for the value labels
)

// SVG renders the chart. Every text is escaped, and numbers are formatted
// by the program, so no stored value reaches the markup unescaped.
func (c barChart) SVG() template.HTML {
	esc := template.HTMLEscapeString
	maxValue := 0.0
	for _, v := range c.Values {
		maxValue = math.Max(maxValue, v)
	}
	scaleMax := niceCeiling(maxValue)
	plotHeight := float64(chartHeight - chartBottom - chartTop)
	plotWidth := float64(chartWidth - chartLeft)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		chartWidth, chartHeight, chartWidth, chartHeight, esc(c.Title))
	fmt.Fprintf(&b, `<title>%s</title>`, esc(c.Title))
	base := float64(chartHeight - chartBottom)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, chartLeft, base, chartWidth, base)
	fmt.Fprintf(&b, `<line class="grid" x1="%d" y1="%d" x2="%d" y2="%d"/>`, chartLeft, chartTop, chartWidth, chartTop)
	fmt.Fprintf(&b, `<text class="axis-label" x="%d" y="%d" text-anchor="end">%s%s</text>`,
		chartLeft-4, chartTop+4, esc(formatNumber(scaleMax)), esc(unitSuffix(c.Unit)))
	fmt.Fprintf(&b, `<text class="axis-label" x="%d" y="%.1f" text-anchor="end">0</text>`, chartLeft-4, base+4)
	n := len(c.Values)
	if n == 0 {
		b.WriteString(`</svg>`)
		return template.HTML(b.String())
	}
	slot := plotWidth / float64(n)
	barWidth := slot * 0.7
	for i, v := range c.Values {
		h := 0.0
		if scaleMax > 0 {
			h = v / scaleMax * plotHeight
		}
		x := float64(chartLeft) + float64(i)*slot + (slot-barWidth)/2
		label := ""
		if i < len(c.Labels) {
			label = c.Labels[i]
		}
		fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %s%s</title></rect>`,
			x, base-h, barWidth, h, esc(label), esc(formatNumber(v)), esc(unitSuffix(c.Unit)))
		if v > 0 {
			fmt.Fprintf(&b, `<text class="value" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`,
				x+barWidth/2, base-h-3, esc(formatNumber(v)))
		}
		// Every other day is labelled, so the labels do not overlap.
		if (n-1-i)%2 == 0 {
			fmt.Fprintf(&b, `<text class="day" x="%.1f" y="%d" text-anchor="middle">%s</text>`,
				x+barWidth/2, chartHeight-6, esc(label))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceCeiling rounds v up to 1, 2 or 5 times a power of ten, for the axis.
func niceCeiling(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// formatNumber shows whole numbers without decimals and others with one.
func formatNumber(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func unitSuffix(unit string) string {
	if unit == "" {
		return ""
	}
	return " " + unit
}
