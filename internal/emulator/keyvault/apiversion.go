package keyvault

import "fmt"

// latestAPIVersion is the newest stable version, the one azsecrets v1.5.x sends.
const latestAPIVersion = "2026-04-01"

// supportedAPIVersions are the secrets data-plane versions that share the
// wire format served here: the numbered 7.x line and the dated versions that
// replaced it after 7.6, as published in the Azure REST API specifications.
var supportedAPIVersions = map[string]bool{
	"7.0":                true,
	"7.1":                true,
	"7.2":                true,
	"7.3":                true,
	"7.4":                true,
	"7.5":                true,
	"7.6":                true,
	"7.6-preview.2":      true,
	"2025-06-01-preview": true,
	"2025-07-01":         true,
	"2026-01-01-preview": true,
	"2026-03-01-preview": true,
	"2026-04-01":         true,
	"2026-05-01-preview": true,
	"2026-07-01-preview": true,
}

// checkAPIVersion returns the service's BadParameter error for a missing or
// unknown api-version.
func checkAPIVersion(version string) *apiError {
	if supportedAPIVersions[version] {
		return nil
	}
	return badParameter(fmt.Sprintf(
		"The specified version (%s) is not recognized. Consider using the latest supported version (%s).",
		version, latestAPIVersion))
}
