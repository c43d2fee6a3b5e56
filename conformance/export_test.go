package conformance

// NotByRule is notByRule for the external tests: the self-test tells a
// spec that failed for want of a finding from one its rule judged.
const NotByRule = notByRule
