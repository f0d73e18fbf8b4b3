package emulator

import (
	"context"
	"strings"
	"testing"
)

func TestStartRejectsNonLoopbackAddress(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		srv, err := Start(context.Background(), Config{Addr: addr})
		if err == nil {
			srv.Close()
			t.Errorf("Start(%q) succeeded; want a loopback error", addr)
			continue
		}
		if !strings.Contains(err.Error(), "loopback") {
			t.Errorf("Start(%q) error = %v; want it to say loopback", addr, err)
		}
	}
}
