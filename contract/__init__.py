"""What the producer (the authorizer) and the consumer share, and nothing else: standard library only.

It ships in the Lambda zip beside `authorizer/`. Resource names from the environment
(`contract.environment`), the usage event v1 (`contract.events`), the analytics table's keys and
counters (`contract.table`), AWS error codes (`contract.aws`) and how every component retries
(`contract.retry`).
"""
