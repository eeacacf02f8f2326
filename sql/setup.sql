\set SHOW_CONTEXT never
-- The extension is created by pg_regress (--load-extension); check what it owns.
SELECT extname, extversion FROM pg_extension WHERE extname = 'webhook';
SELECT c.relname, c.relkind
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e' AND d.classid = 'pg_class'::regclass
 ORDER BY 1;
SELECT p.proname
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e' AND d.classid = 'pg_proc'::regclass
 ORDER BY 1;
-- every object is named webhook_*
SELECT count(*) AS misnamed
  FROM pg_depend d
  LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
  LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e'
   AND coalesce(c.relname, p.proname) NOT LIKE 'webhook\_%';
-- GUCs
SELECT name, setting, unit, context FROM pg_settings WHERE name LIKE 'webhook.%' ORDER BY 1;
-- the prefix is reserved: a typo is an error, not a silent placeholder
SET webhook.no_such_setting = 1;
-- only a superuser (via the config file) may open destinations
SET webhook.allow_http = on;
SET webhook.allowed_networks = '10.0.0.0/8';
