package auth

import (
	"bytes"
	"fmt"
	"os"
)

// EnvKey names the environment variable holding the signing key when no
// key file is given.
const EnvKey = "FUND_JWT_KEY"

// LoadKey reads the signing key from file (trailing newlines dropped), or,
// when file is "", from the environment variable FUND_JWT_KEY. The key must
// be at least KeyLenMin bytes.
func LoadKey(file string) ([]byte, error) {
	var key []byte
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("jwt key: %w", err)
		}
		key = bytes.TrimRight(b, "\r\n")
	} else {
		key = []byte(os.Getenv(EnvKey))
		if len(key) == 0 {
			return nil, fmt.Errorf("jwt key: give --jwt-key-file or set %s", EnvKey)
		}
	}
	if len(key) < KeyLenMin {
		return nil, ErrKeyTooShort
	}
	return key, nil
}
