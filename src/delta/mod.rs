//! Pure status arithmetic: what Fleet would write after a resource goes missing.
