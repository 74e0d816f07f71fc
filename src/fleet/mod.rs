//! Fleet's own vocabulary: labels, annotations, setID and hash rules, status types.
