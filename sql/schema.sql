-- Users table for authentication
CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(255) UNIQUE NOT NULL,
    password VARCHAR(255) NOT NULL,
    is_active BOOLEAN DEFAULT true,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

-- User balances
CREATE TABLE balances (
    id SERIAL PRIMARY KEY,
    user_id INTEGER REFERENCES users(id),
    traffic_bytes BIGINT DEFAULT 0,
    used_bytes BIGINT DEFAULT 0,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

-- Authorized IPs whitelist
CREATE TABLE authorized_ips (
    id SERIAL PRIMARY KEY,
    ip VARCHAR(45) NOT NULL,
    description TEXT,
    is_active BOOLEAN DEFAULT true,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

-- Upstream proxy providers
CREATE TABLE proxies (
    id SERIAL PRIMARY KEY,
    base_url VARCHAR(255) NOT NULL,
    name VARCHAR(255) NOT NULL,
    slug VARCHAR(255) UNIQUE NOT NULL,
    username VARCHAR(255) NOT NULL,
    password VARCHAR(255) NOT NULL,
    url_template TEXT NOT NULL,
    port_min INTEGER NOT NULL,
    port_max INTEGER NOT NULL,
    is_visible BOOLEAN DEFAULT true,
    is_disabled BOOLEAN DEFAULT false,
    is_global BOOLEAN DEFAULT false,
    country_format VARCHAR(50) DEFAULT 'ISO',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

-- Traffic logs
CREATE TABLE traffic_logs (
    id BIGSERIAL PRIMARY KEY,
    user_id INTEGER REFERENCES users(id),
    request_bytes BIGINT DEFAULT 0,
    response_bytes BIGINT DEFAULT 0,
    total_bytes BIGINT DEFAULT 0,
    target_host VARCHAR(255),
    target_method VARCHAR(10),
    proxy_slug VARCHAR(255),
    country VARCHAR(10),
    session_id VARCHAR(100),
    duration INTEGER,
    status_code INTEGER,
    client_ip VARCHAR(45),
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

-- Indexes
CREATE INDEX idx_users_username ON users(username);
CREATE INDEX idx_users_active ON users(is_active);
CREATE UNIQUE INDEX idx_balances_user_id ON balances(user_id);
CREATE INDEX idx_authorized_ips_active ON authorized_ips(is_active);
CREATE INDEX idx_proxies_visible_disabled ON proxies(is_visible, is_disabled);
CREATE INDEX idx_traffic_logs_user_id ON traffic_logs(user_id);
CREATE INDEX idx_traffic_logs_created_at ON traffic_logs(created_at);
