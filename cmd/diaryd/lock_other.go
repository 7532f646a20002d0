//go:build !unix

package main

// lockData does nothing where flock is not to be had: there, nothing
// stops "diaryd migrate" from copying a study whose server runs.
func lockData(dir string) (release func(), err error) { return func() {}, nil }
