package metrics

import (
	"net/http"
	"strconv"
	"time"
)

// unmatchedRoute labels calls that no route pattern matched, so scanners
// probing random paths add one series, not one per path.
const unmatchedRoute = "unmatched"

// Middleware times every call to next by route and status code. The route
// is the http.ServeMux pattern that matched, such as
// "POST /v1/requests/{id}/approve", which the mux records in the request
// it is given (http.Request.Pattern, Go 1.23 and later). A handler that
// routes a copy of the request, made with WithContext, leaves the pattern
// of the outermost mux.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = unmatchedRoute
		}
		m.apiLatency.WithLabelValues(route, strconv.Itoa(rec.status)).Observe(time.Since(start).Seconds())
	})
}

// statusRecorder keeps the status code written.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
