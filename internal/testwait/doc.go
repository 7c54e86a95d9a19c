// Package testwait holds the polling helper tests share: wait for a
// condition with a deadline instead of sleeping a fixed time.
package testwait
