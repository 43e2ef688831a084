-- Explicit placement and tiers. Map from shard_map.sql: s1 and s2, weight 1 each.
\set SHOW_CONTEXT never
SELECT edgeshard.add_shard('pro1', 'host=127.0.0.1 port=5441', weight => 0);
SELECT edgeshard.add_shard('pro2', 'host=127.0.0.1 port=5442', weight => 0);

-- explicit placement overrides the ring, for bigint and text ids alike
SELECT edgeshard.shard_for(1) AS ring_owner_of_1;
SELECT edgeshard.place_tenant(1, 's2');
SELECT edgeshard.shard_for(1), edgeshard.shard_for('1');
SELECT edgeshard.place_tenant('acme', 's1');
SELECT edgeshard.shard_for('acme');
SELECT * FROM edgeshard.tenant_placement;
SELECT name, placed_tenants FROM edgeshard.shard_map;
-- placing again moves the placement; unplacing hands the tenant back to the ring
SELECT edgeshard.place_tenant(1, 's1');
SELECT edgeshard.shard_for(1);
SELECT edgeshard.unplace_tenant(1);
SELECT edgeshard.shard_for(1) AS ring_owner_of_1;
SELECT edgeshard.unplace_tenant(1);
\echo :LAST_ERROR_SQLSTATE

-- bad arguments
SELECT edgeshard.place_tenant(2, 'nope');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.place_tenant(NULL::bigint, 's1');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.place_tenant(NULL::text, 's1');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.place_tenant('', 's1');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.place_tenant(2, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.unplace_tenant(NULL::text);
\echo :LAST_ERROR_SQLSTATE

-- tiers: pro and enterprise tenants get a dedicated shard (weight 0, nobody else on it)
SELECT edgeshard.set_tier(100, 'pro');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.set_tier(100, 'pro', 's1');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.set_tier(100, 'pro', 'pro1');
SELECT edgeshard.set_tier(101, 'enterprise', 'pro1');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.place_tenant(102, 'pro1');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.set_tier(101, 'enterprise', 'pro2');
SELECT edgeshard.set_tier(101, 'enterprise');
SELECT edgeshard.set_tier(101, 'gold');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.set_tier(101, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.unplace_tenant(100);
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.set_shard_weight('pro1', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.remove_shard('pro1', drain => true);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM edgeshard.tenant_placement;

-- back to free: on the ring again, or on a named shared shard
SELECT edgeshard.set_tier(100, 'free');
SELECT edgeshard.set_tier(101, 'free', 's2');
SELECT * FROM edgeshard.tenant_placement;

-- a shard with placed tenants is removed only when asked to drain them
SELECT edgeshard.place_tenant('acme', 'pro1');
SELECT edgeshard.remove_shard('pro1');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.remove_shard('pro1', drain => true);
SELECT edgeshard.shard_for('acme') IN ('s1', 's2') AS acme_on_the_ring;
SELECT edgeshard.remove_shard('pro2');
SELECT * FROM edgeshard.tenant_placement;
SELECT name, placed_tenants FROM edgeshard.shard_map;
