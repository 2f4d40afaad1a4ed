package postgres

// Fingerprint exposes fingerprint to the external tests.
var Fingerprint = fingerprint
