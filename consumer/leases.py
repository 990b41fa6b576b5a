"""A fast first start for the KCL: its tables and this worker's leases, created before the daemon.

Left to itself, KCL 3.1.3 spends ~100 s before its first record on a new application: a random
1-30 s wait while the lease table is empty, a 60 s sleep after the first shard sync, and a lease
assigner that skips workers which have not yet reported metrics. When the lease table already
holds leases owned by this worker's id, the daemon discovers them at once and none of that runs.

So, when the lease table is empty, we create the three KCL tables (the key schemas KCL 3.1.3
creates itself) and one lease per open shard owned by this worker. Every write is conditional:
with several workers starting together one wins, and the KCL's lease assigner rebalances later.
A resharded stream is left to the KCL's own shard sync, which knows shard parentage.

A lease's first checkpoint is the sentinel of the application's initial position (`TRIM_HORIZON`,
`LATEST`, or `AT_TIMESTAMP`, whose timestamp the KCL takes from `initialPositionInStreamExtended`),
exactly what KCL 3.1.3 writes when it creates the lease itself.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from consumer import aws
from contract.aws import aws_error_code

INITIAL_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")


def kcl_table_specs(application_name: str) -> list[dict[str, Any]]:
    def table(name: str, key: str, **extra: Any) -> dict[str, Any]:
        return {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"}],
            **extra,
        }

    leases = table(
        application_name,
        "leaseKey",
        GlobalSecondaryIndexes=[
            {
                "IndexName": "LeaseOwnerToLeaseKeyIndex",
                "KeySchema": [
                    {"AttributeName": "leaseOwner", "KeyType": "HASH"},
                    {"AttributeName": "leaseKey", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    leases["AttributeDefinitions"].append({"AttributeName": "leaseOwner", "AttributeType": "S"})
    return [
        leases,
        table(f"{application_name}-CoordinatorState", "key"),
        table(f"{application_name}-WorkerMetricStats", "wid"),
    ]


def bootstrap(
    dynamodb: Any,
    kinesis: Any,
    application_name: str,
    stream_name: str,
    worker_id: str,
    *,
    initial_position: str = "TRIM_HORIZON",
) -> int:
    """Create missing KCL tables and, if no lease exists yet, own one per open shard.

    Returns the number of leases created (0 when the application already has leases).
    """
    if initial_position not in INITIAL_POSITIONS:
        raise ValueError(f"initial position {initial_position!r} is not one of {INITIAL_POSITIONS}")
    for spec in kcl_table_specs(application_name):
        aws.create_table(dynamodb, spec)
    if aws.holds_items(dynamodb, application_name):
        return 0
    shards = aws.open_shards(kinesis, stream_name)
    if any(shard.get("ParentShardId") for shard in shards):
        return 0  # a resharded stream: parents go before children, which only the KCL tracks
    return sum(
        _create_lease(dynamodb, application_name, shard, worker_id, initial_position) for shard in shards
    )


def _create_lease(
    dynamodb: Any, table: str, shard: dict[str, Any], worker_id: str, initial_position: str
) -> int:
    item = {
        "leaseKey": {"S": shard["ShardId"]},
        "leaseOwner": {"S": worker_id},
        "leaseCounter": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "checkpoint": {"S": initial_position},
        "checkpointSubSequenceNumber": {"N": "0"},
        "startingHashKey": {"S": shard["HashKeyRange"]["StartingHashKey"]},
        "endingHashKey": {"S": shard["HashKeyRange"]["EndingHashKey"]},
    }
    try:
        dynamodb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(leaseKey)")
    except ClientError as exc:
        if aws_error_code(exc) == "ConditionalCheckFailedException":
            return 0
        raise
    return 1
