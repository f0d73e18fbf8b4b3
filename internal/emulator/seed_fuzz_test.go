package emulator

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// FuzzParseSeed parses a seed file, which users pass to `elevate emulator
// --seed`, as YAML or JSON, and builds the emulator's state from it the way
// Start does. A seed either fails with an error or builds. An accepted
// seed written out as JSON must parse to a seed with the same JSON.
func FuzzParseSeed(f *testing.F) {
	f.Add(DemoSeedYAML(), false)
	if data, err := os.ReadFile("../../examples/emulator/demo.yaml"); err == nil {
		f.Add(data, false)
	}
	demoJSON, err := json.Marshal(DefaultSeed())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(demoJSON, true)
	f.Add([]byte("tenant:\n  id: "+demoTenant+"\n  colour: red\n"), false)
	f.Add([]byte("tenant: {id: "+demoTenant+"}\nsubscriptions: [{id: not-a-guid}]\n"), false)
	f.Add([]byte("tenant: {id: "+demoTenant+"}\nroleAssignments: [{name: x, scope: /, roleName: Owner, principalId: y}]\n"), false)
	f.Add([]byte("tenant: {id: "+demoTenant+"}\neligibilities: [{principalId: p, scope: /subscriptions/x, roleName: Reader, start: 2026-01-01T00:00:00Z, end: 2025-01-01T00:00:00Z}]\n"), false)
	f.Add([]byte("tenant: {id: "+demoTenant+"}\nrolePolicies: [{scope: /, roleName: Reader, maximumDuration: P99999999999D}]\n"), false)
	f.Add([]byte("a: &a [*a, *a, *a, *a]\n"), false)
	f.Add([]byte(`{"tenant":{"id":"`+demoTenant+`"},"tenant":{"id":"x"}}`), true)
	f.Add([]byte(`{"tenant":{"id":"`+demoTenant+`"}} trailing`), true)
	f.Add([]byte(``), true)

	issuer := "https://127.0.0.1:1/github"
	now := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	// The round trip is only checked if the demo seed gets that far.
	if _, err := newState(DefaultSeed(), issuer, now); err != nil {
		f.Fatalf("build the state of the demo seed: %v", err)
	}

	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		ext := ".yaml"
		if isJSON {
			ext = ".json"
		}
		seed, err := parseSeed(data, ext)
		if err != nil {
			return
		}
		// Start replaces the zero seed with DefaultSeed.
		if seed.isZero() {
			return
		}
		st, err := newState(seed, issuer, now)
		if err != nil {
			return
		}
		if _, err := newPIMStore(seed, st, now); err != nil {
			return
		}

		out, err := json.Marshal(seed)
		if err != nil {
			t.Fatalf("encode an accepted seed as JSON: %v", err)
		}
		again, err := parseSeed(out, ".json")
		if err != nil {
			t.Fatalf("parse an accepted seed written as JSON: %v\n%s", err, out)
		}
		reencoded, err := json.Marshal(again)
		if err != nil {
			t.Fatalf("encode the reparsed seed: %v", err)
		}
		if !bytes.Equal(reencoded, out) {
			t.Fatalf("seed changed in a JSON round trip:\n got %s\nwant %s", reencoded, out)
		}
	})
}
