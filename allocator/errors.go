package allocator

import (
	"errors"
	"fmt"
)

// Reason classifies an allocation failure. The controller maps it directly
// to a Kubernetes condition reason, so the values are CamelCase words.
type Reason string

// Reasons an Assign can fail.
const (
	// ReasonPoolExhausted: every usable pool of the family is full.
	ReasonPoolExhausted Reason = "PoolExhausted"
	// ReasonRequestedAddressUnavailable: a requested address is outside the
	// allowed pools, reserved, avoided as buggy, or held by another Service.
	ReasonRequestedAddressUnavailable Reason = "RequestedAddressUnavailable"
	// ReasonNoMatchingPool: no allowed pool could ever serve the request
	// (none exists, none has the family, or autoAssign is off for all).
	ReasonNoMatchingPool Reason = "NoMatchingPool"
	// ReasonSharingConflict: the address is held under the same sharing key
	// but the Services cannot share it (ports, namespace or backends).
	ReasonSharingConflict Reason = "SharingConflict"
	// ReasonInvalidRequest: the request itself is malformed (no service
	// name, unknown family, two requested addresses of one family). The
	// caller is expected to validate, so this signals a caller bug or an
	// unvalidated user input.
	ReasonInvalidRequest Reason = "InvalidRequest"
)

// Error is a failure with a Reason. Msg is written for the Service's owner:
// it says what is wrong and, where possible, what to change.
type Error struct {
	Reason Reason
	Msg    string
}

// Error returns Msg.
func (e *Error) Error() string { return e.Msg }

// ReasonOf returns the Reason of the first *Error in err's chain, or "" when
// there is none, so that wrapped errors keep their classification.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func errorf(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...)}
}
