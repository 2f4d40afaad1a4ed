package settlebench

import "fmt"

func ShardSQLForTest(shards int) string {
	return "SELECT " + fmt.Sprintf(shardSQL, "$1::bigint", shards)
}

func OrderIDSQLForTest() string {
	return "SELECT " + fmt.Sprintf(orderIDSQL, "42::bigint", "'seed-sub'", "'1'")
}
