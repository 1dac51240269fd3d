# mysqlpilot: Consul ACL policy of cluster 'mysql' (consul_prefix 'mysqlpilot', service_name 'mysql').
# Create it with `consul acl policy create -name mysqlpilot-mysql -rules @FILE` and give
# its token to the hooks and ContainerPilot as CONSUL_HTTP_TOKEN (docs/security.md).
key_prefix "mysqlpilot/mysql/" { policy = "write" }
session_prefix "" { policy = "write" }
node_prefix "" { policy = "write" }
service "mysql" { policy = "write" }
service "mysql-primary" { policy = "write" }
service "mysql-replica" { policy = "write" }
service "mysql-pilot" { policy = "write" }
service_prefix "" { policy = "read" }
