module periscope.demo/shop

go 1.19
