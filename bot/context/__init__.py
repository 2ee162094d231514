"""The shared memory of a customer: identities, profile, conversation state and unified history."""
