"""The Temporal engine: one durable workflow per rollout runs the pure state machine; Terraform runs as
activities on runner-pool task queues (`estate worker --pool NAME`). See docs/scale-out.md."""
