-- +goose Up

-- What the settlement run paid each customer for each natural day (as new
-- shares, 0.01 share = 1 fen; negative on a losing day), for the holdings
-- view: yesterday's income and the cumulative sum. Append-only: a row is
-- written once and never changed.
CREATE TABLE customer_income (
    customer_id bigint NOT NULL,
    date        date   NOT NULL,
    amount      bigint NOT NULL,
    PRIMARY KEY (customer_id, date),
    CONSTRAINT customer_income_customer FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT customer_income_amount CHECK (amount BETWEEN -10000000000 AND 10000000000)
);

-- What the fund published for each natural day: the income per 10,000
-- shares in 0.0001 CNY and the 7-day annualised yield in thousandths of a
-- percent (NULL for the fund's first six days). Days follow one another
-- without gaps. Append-only.
CREATE TABLE fund_yields (
    date            date   PRIMARY KEY,
    income_per_10k  bigint NOT NULL,
    seven_day_yield bigint,
    CONSTRAINT fund_yields_income_range CHECK (income_per_10k BETWEEN -1000000 AND 1000000)
);

-- +goose Down
DROP TABLE fund_yields;
DROP TABLE customer_income;
