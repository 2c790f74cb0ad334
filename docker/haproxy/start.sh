#!/bin/sh
# deploy/haproxy.cfg on this stack's ports: haproxy on $HAPROXY_PORT, the three nodes on
# $GLANCE_PORT, $GLANCE_PORT_2 and $GLANCE_PORT_3.
set -eu
sed -e "s/bind 127.0.0.1:9292/bind 127.0.0.1:${HAPROXY_PORT:-9292}/" \
    -e "s/127.0.0.1:19292/127.0.0.1:${GLANCE_PORT}/" \
    -e "s/127.0.0.1:19293/127.0.0.1:${GLANCE_PORT_2}/" \
    -e "s/127.0.0.1:19294/127.0.0.1:${GLANCE_PORT_3}/" \
    /etc/haproxy/glance-api.cfg >/etc/haproxy/haproxy.cfg
exec haproxy -db -f /etc/haproxy/haproxy.cfg
