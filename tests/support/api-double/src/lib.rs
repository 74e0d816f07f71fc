//! Kubernetes API double.
