-- Analytic queries over the ClickHouse mirror (see docs/MIRRORS.md, section ClickHouse).
--
-- Run them in the mirror's database (`clickhouse-client -d seqd --multiquery < docs/analytics.sql`,
-- or one at a time). They use nothing newer than ClickHouse 18.16 and run unchanged on current
-- releases. Every table is a ReplacingMergeTree that may briefly hold two copies of a re-sent row
-- until a merge: always read with FINAL, as below.
--
-- Units: prices are quote units per whole base unit, quantities base units, notionals and fees
-- quote units, all Decimal(38, 18) and exact. `time` is DateTime('UTC'), whole seconds.
--
-- Each query starts with a `-- name: <name>` line (tests/replicate_clickhouse.rs loads them by
-- name and checks their results against the engine's trades).

-- name: kline_1m
-- 1-minute OHLCV candles per symbol: open is the price of the minute's first trade (lowest
-- trade_id), close of its last; volume in base units, quote_volume in quote units.
SELECT
    symbol,
    toStartOfMinute(time) AS minute,
    argMin(price, trade_id) AS open,
    max(price) AS high,
    min(price) AS low,
    argMax(price, trade_id) AS close,
    sum(qty) AS volume,
    sum(quote_qty) AS quote_volume,
    count() AS trade_count
FROM trades FINAL
GROUP BY symbol, minute
ORDER BY symbol, minute;

-- name: account_trades_7d
-- Per account, over the 7 days (604800 s) up to the newest trade in the mirror: how many
-- trades it took part in, as maker or taker (a trade counts once per account, even if one
-- account were on both sides), and their average notional in quote units, truncated to the
-- 18 decimals of the column. `sum / count()` rather than `avg`: releases after 18.16 return
-- `avg` of a Decimal as Float64, which is not exact; the quotient of Decimals stays Decimal(38, 18)
-- on every release (tests/replicate_clickhouse.rs compares 18.16 with a current engine).
-- For a window ending now, replace the subquery by now().
SELECT
    account,
    count() AS trade_count,
    sum(quote_qty) / count() AS avg_notional
FROM
(
    SELECT
        arrayJoin(if(maker_account = taker_account, [maker_account], [maker_account, taker_account])) AS account,
        quote_qty
    FROM trades FINAL
    WHERE time > (SELECT max(time) FROM trades FINAL) - 604800
)
GROUP BY account
ORDER BY account;

-- name: daily_volume_fees
-- Per UTC day and symbol: trade count, volume (base), quote volume, and fees charged to makers,
-- to takers and in all (quote units).
SELECT
    toDate(time) AS day,
    symbol,
    count() AS trade_count,
    sum(qty) AS volume,
    sum(quote_qty) AS quote_volume,
    sum(maker_fee) AS maker_fees,
    sum(taker_fee) AS taker_fees,
    sum(maker_fee) + sum(taker_fee) AS fees
FROM trades FINAL
GROUP BY day, symbol
ORDER BY day, symbol;
