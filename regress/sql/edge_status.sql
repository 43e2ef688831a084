-- edgeshard.edge_status: relays' reports about their subscribers.
CREATE EXTENSION IF NOT EXISTS edgeshard;

SELECT edgeshard.report_edge_status('relay-a', '[
  {"subscriber":"edge-1","peer":"127.0.0.1:4000","tenants":"1,2","connected":true,
   "acked_lsn":"0/100","sent_lsn":"0/180","relay_lsn":"0/200","lag_bytes":256,
   "lag_seconds":0.5,"frames_sent":10,"bytes_sent":1000},
  {"subscriber":"edge-2","connected":false,"acked_lsn":"0/80","sent_lsn":"0/80",
   "relay_lsn":"0/200","lag_bytes":384,"lag_seconds":3}
]');
SELECT relay, subscriber, connected, peer, tenants, acked_lsn, relay_lsn, relay_lag_bytes,
       lag_bytes > 0 AS behind_primary, lag_seconds, frames_sent, bytes_sent,
       report_age < interval '1 minute' AS fresh
  FROM edgeshard.edge_status ORDER BY subscriber;

-- A new report replaces the relay's rows; other relays' rows stay.
SELECT edgeshard.report_edge_status('relay-b', '[{"subscriber":"edge-9","connected":true,
  "acked_lsn":"0/200","sent_lsn":"0/200","relay_lsn":"0/200","lag_bytes":0,"lag_seconds":0}]');
SELECT edgeshard.report_edge_status('relay-a', '[]');
SELECT relay, subscriber FROM edgeshard.edge_status ORDER BY relay, subscriber;

-- Bad reports are refused with 22023.
\set VERBOSITY default
SELECT edgeshard.report_edge_status('relay-a', '{"subscriber":"x"}');
SELECT edgeshard.report_edge_status('', '[]');

-- Only superusers (or roles granted EXECUTE) may report; everyone may read.
CREATE ROLE edge_status_reader;
SET ROLE edge_status_reader;
SELECT count(*) FROM edgeshard.edge_status;
SELECT edgeshard.report_edge_status('relay-x', '[]');
RESET ROLE;
DROP ROLE edge_status_reader;
SELECT edgeshard.report_edge_status('relay-b', '[]');
