package plugin

import (
	"errors"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/ipam"
)

// coded is implemented by errors that know their CNI code.
type coded interface{ CNICode() uint }

// ToCNI converts any error of the verbs into a CNI error at the skel
// boundary; everything below works with ordinary wrapped errors.
func ToCNI(err error) error {
	if err == nil {
		return nil
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	code := uint(types.ErrInternal)
	var c coded
	var se *ipam.StaticError
	switch {
	case errors.As(err, &c):
		code = c.CNICode()
	case errors.Is(err, ipam.ErrExhausted), errors.Is(err, ipam.ErrBlocksFull):
		code = types.ErrTryAgainLater
	case errors.Is(err, ipam.ErrLockTimeout), errors.Is(err, acl.ErrLockTimeout):
		code = types.ErrTryAgainLater
	case errors.As(err, &se):
		code = types.ErrInvalidNetworkConfig
	}
	return &types.Error{Code: code, Msg: err.Error()}
}
