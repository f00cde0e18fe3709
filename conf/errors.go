package conf

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
)

// Error is a validation error: which key, which value, what is wrong, and
// the CNI error code the runtime should see.
type Error struct {
	Code  uint   // a types.Err* code
	Key   string // e.g. "zones[1].subnet" or "CNI_ARGS ZONE"
	Value string // the offending value as the user wrote it
	Msg   string
}

func (e *Error) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Key, e.Msg)
	}
	return fmt.Sprintf("%s %q: %s", e.Key, e.Value, e.Msg)
}

// CNICode is the CNI error code of the error.
func (e *Error) CNICode() uint { return e.Code }

func configErr(key, value, format string, a ...any) *Error {
	return &Error{Code: types.ErrInvalidNetworkConfig, Key: key, Value: value, Msg: fmt.Sprintf(format, a...)}
}

func envErr(key, value, format string, a ...any) *Error {
	return &Error{Code: types.ErrInvalidEnvironmentVariables, Key: key, Value: value, Msg: fmt.Sprintf(format, a...)}
}
