package emulator

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultSeedValid(t *testing.T) {
	seed := DefaultSeed()
	if seed.Tenant.ID != demoTenant {
		t.Errorf("tenant: got %q; want %q", seed.Tenant.ID, demoTenant)
	}
	if _, err := newState(seed, "https://issuer.example", time.Now()); err != nil {
		t.Errorf("newState(DefaultSeed()): %v", err)
	}
}

func TestExampleSeedMatchesDefault(t *testing.T) {
	example, err := os.ReadFile("../../examples/emulator/demo.yaml")
	if err != nil {
		t.Fatalf("read example seed: %v", err)
	}
	if !bytes.Equal(example, DemoSeedYAML()) {
		t.Errorf("examples/emulator/demo.yaml differs from internal/emulator/demo.yaml; copy one to the other")
	}
}

func TestLoadSeedStrict(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, file, text, wantErr string
	}{
		{"yaml unknown field", "s.yaml", "tenant:\n  id: " + demoTenant + "\n  colour: red\n", "colour"},
		{"json unknown field", "s.json", `{"tenant":{"id":"` + demoTenant + `"},"widgets":[]}`, "widgets"},
		{"unsupported extension", "s.toml", "", ".toml"},
		{"valid yaml", "ok.yml", "tenant:\n  id: " + demoTenant + "\n  displayName: T\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadSeed(path)
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("LoadSeed: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error: got %v; want it to name %q", err, tc.wantErr)
			}
		})
	}
}

func TestStartRejectsInvalidSeed(t *testing.T) {
	base := func() Seed { return DefaultSeed() }
	tests := []struct {
		name   string
		mutate func(*Seed)
		want   string
	}{
		{"tenant not a GUID", func(s *Seed) { s.Tenant.ID = "contoso" }, "tenant"},
		{"unknown role name", func(s *Seed) { s.RoleAssignments[0].RoleName = "Wizard" }, "Wizard"},
		{"assignment to unknown principal", func(s *Seed) {
			s.RoleAssignments[0].PrincipalID = "00000000-0000-4000-8000-000000000000"
		}, "not in the seed"},
		{"bad lock level", func(s *Seed) { s.Locks = []Lock{{Scope: demoRG, Name: "l", Level: "Sometimes"}} }, "Sometimes"},
		{"secrets on storage", func(s *Seed) {
			s.Subscriptions[0].ResourceGroups[0].Resources[1].Secrets = []SeedSecret{{Name: "a", Value: "b"}}
		}, "only Microsoft.KeyVault/vaults"},
		{"user with client secret", func(s *Seed) { s.Principals[1].ClientSecret = "x" }, "clientSecret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seed := base()
			tc.mutate(&seed)
			s, err := Start(context.Background(), Config{Seed: seed, StateDir: t.TempDir()})
			if err == nil {
				_ = s.Close()
				t.Fatalf("Start: got nil error; want one naming %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error: got %v; want it to name %q", err, tc.want)
			}
		})
	}
}
