package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	// The embedded zone database lets IANA names load on hosts without
	// one, such as minimal containers.
	_ "time/tzdata"
)

// timeWindow is a weekly window in a named time zone. It compares the
// local wall clock, so "09:00-17:00" in Europe/Berlin keeps meaning nine to
// five across daylight saving changes.
type timeWindow struct {
	loc *time.Location
	// days is indexed by time.Weekday.
	days [7]bool
	// spans are [start, end) in minutes after local midnight. A span with
	// start > end runs past midnight.
	spans []span
}

type span struct{ start, end int }

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

func compileWindow(f timeFile) (*timeWindow, error) {
	if len(f.Days) == 0 && len(f.Hours) == 0 {
		return nil, errors.New("time needs days, hours or both")
	}
	w := &timeWindow{loc: time.UTC}
	if f.Timezone != "" {
		loc, err := time.LoadLocation(f.Timezone)
		if err != nil || f.Timezone == "Local" {
			return nil, fmt.Errorf("timezone %q is not an IANA time zone name such as Europe/Berlin", f.Timezone)
		}
		w.loc = loc
	}

	if len(f.Days) == 0 {
		w.days = [7]bool{true, true, true, true, true, true, true}
	}
	for _, d := range f.Days {
		if err := w.addDays(d); err != nil {
			return nil, err
		}
	}
	for _, h := range f.Hours {
		s, err := parseSpan(h)
		if err != nil {
			return nil, err
		}
		w.spans = append(w.spans, s)
	}
	return w, nil
}

// addDays adds a day ("mon") or an inclusive range of days ("mon-fri",
// "fri-mon") to w.
func (w *timeWindow) addDays(s string) error {
	from, to, isRange := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "-")
	if !isRange {
		to = from
	}
	first, ok1 := weekdays[from]
	last, ok2 := weekdays[to]
	if !ok1 || !ok2 {
		return fmt.Errorf("day %q is invalid; want mon, tue, wed, thu, fri, sat, sun or a range such as mon-fri", s)
	}
	for d := first; ; d = (d + 1) % 7 {
		w.days[d] = true
		if d == last {
			return nil
		}
	}
}

// parseSpan parses "HH:MM-HH:MM". The end is exclusive and may be 24:00.
func parseSpan(s string) (span, error) {
	from, to, ok := strings.Cut(strings.TrimSpace(s), "-")
	start, err1 := parseClock(from)
	end, err2 := parseClock(to)
	if !ok || err1 != nil || err2 != nil || start == 24*60 {
		return span{}, fmt.Errorf("hours %q is invalid; want HH:MM-HH:MM in 24-hour time, such as 09:00-17:00", s)
	}
	if start == end {
		return span{}, fmt.Errorf("hours %q is empty; for the whole day leave hours out", s)
	}
	return span{start: start, end: end}, nil
}

func parseClock(s string) (int, error) {
	hh, mm, ok := strings.Cut(strings.TrimSpace(s), ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	switch {
	case !ok || len(hh) != 2 || len(mm) != 2 || err1 != nil || err2 != nil:
		return 0, errors.New("not HH:MM")
	case h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && m != 0):
		return 0, errors.New("out of range")
	}
	return h*60 + m, nil
}

// contains reports whether t lies in the window. The part of an overnight
// span after midnight belongs to the day it started on, so "fri" with
// "22:00-06:00" includes Saturday 02:00.
func (w *timeWindow) contains(t time.Time) bool {
	local := t.In(w.loc)
	day := local.Weekday()
	minute := local.Hour()*60 + local.Minute()
	if len(w.spans) == 0 {
		return w.days[day]
	}
	previous := (day + 6) % 7
	for _, s := range w.spans {
		switch {
		case s.start < s.end && minute >= s.start && minute < s.end && w.days[day]:
			return true
		case s.start > s.end && minute >= s.start && w.days[day]:
			return true
		case s.start > s.end && minute < s.end && w.days[previous]:
			return true
		}
	}
	return false
}
